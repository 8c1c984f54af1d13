// Test helper process: one bees agent with the given flags (the CLI may not register `bees agent` yet).
import { agentOptionsFrom, runAgentUntilSignal } from '../../core/agent/run.js';

runAgentUntilSignal(agentOptionsFrom(process.argv.slice(2))).then(() => process.exit(0), (err: Error) => {
  process.stderr.write(`agent: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
