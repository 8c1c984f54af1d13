// Preloaded into the measured agent when profiling (BEES_SCALE_PROFILE=1): every line it writes to stderr gets the
// milliseconds since the process started, so the log shows where start-up and a full sync spend their wall time
// (with BEES_TRACE=1, the agent's own phase lines).
import { performance } from 'node:perf_hooks';

if (process.argv.includes('agent')) {
  const write = process.stderr.write.bind(process.stderr);
  let atLineStart = true;
  process.stderr.write = (chunk, ...rest) => {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    const stamped = text.replace(/(^|\n)(?=.)/g, (m, nl, off) =>
      off === 0 && !atLineStart ? m : `${nl}[+${performance.now().toFixed(0)}ms] `,
    );
    atLineStart = text.endsWith('\n');
    return write(stamped, ...rest);
  };
}
