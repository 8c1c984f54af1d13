// `bees demo`: see app/demo/demo.ts. Heavy modules are imported inside run() so `bees help` stays quick.
import { CliError, parse, printJson, table, type Command, type CommandModule } from '../../core/cli/command.js';

const demo: Command = {
  name: 'demo',
  summary: 'Build a 3-host overlay on this machine and show cross-host ping, throughput and tenant isolation',
  usage: `bees demo [--seconds N] [--json]
  Needs root, iproute2, nftables, iperf3 and ZooKeeper (Debian's zookeeper package). Builds three hosts as network
  namespaces on an underlay bridge, starts a ZooKeeper and one bees agent per host, creates two tenants with the
  same subnet, and shows cross-host ping and iperf3 throughput inside a tenant and isolation between tenants.
  Everything is removed at the end, also on Ctrl-C. Exit 0 when every check came out as expected.
  --seconds N   iperf3 duration (default 3)
  --json        the report as JSON on stdout (progress still goes to stderr)`,
  async run(args, io) {
    const { values } = parse(demo, args, { seconds: { type: 'string' } }, { min: 0, max: 0 });
    const seconds = values.seconds === undefined ? 3 : Number(values.seconds);
    if (!Number.isInteger(seconds) || seconds < 1 || seconds > 60)
      throw new CliError(`demo: --seconds must be a whole number from 1 to 60, got '${values.seconds}'`, 2);
    if (process.getuid?.() !== 0) throw new CliError('demo: needs root (it creates network namespaces)', 1);
    const { runDemo } = await import('./demo.js');
    const ctl = new AbortController();
    const onSignal = () => {
      io.err('bees: demo: interrupted, cleaning up…\n');
      ctl.abort();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      const report = await runDemo({ seconds, signal: ctl.signal, progress: (m) => io.err(`bees: demo: ${m}\n`) });
      if (values.json) printJson(io, report);
      else
        io.out(
          table(
            ['CHECK', 'FROM', 'TO', 'EXPECTED', 'RESULT'],
            report.checks.map((x) => [x.check, x.from, x.to, x.expected, x.ok ? x.result : `${x.result} (UNEXPECTED)`]),
          ),
        );
      if (report.logs) io.err(`bees: demo: a check failed; the agents' logs are in ${report.logs}\n`);
      return report.ok ? 0 : 1;
    } catch (e) {
      if (ctl.signal.aborted) return 130;
      throw new CliError(`demo: ${(e as Error).message}`);
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  },
};

export const commands: Command[] = [demo];
export default { commands } satisfies CommandModule;
