// The import check (eslint.config.js, `npm run lint:imports`): core/ imports no adapter. The real core/ tree is
// clean, and a core file planted with an import of each adapter (static, type-only, dynamic) is reported.
import test from 'ava';
import { ESLint } from 'eslint';
import tseslint from 'typescript-eslint';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const RULE = 'import-x/no-restricted-paths';

// Planted files are not on disk, so TypeScript's project service cannot type them: lint them without the
// type-aware rules (the import rule needs no types).
const untyped = () => new ESLint({ cwd: ROOT, overrideConfig: [{ ...tseslint.configs.disableTypeChecked, files: ['**/*.ts'] }] });

test('core/ as it is imports no adapter', async (t) => {
  // The import rule needs no types; `npm run lint` runs the type-aware rules over the same files anyway.
  const results = await untyped().lintFiles(['core']);
  const hits = results.flatMap((r) =>
    r.messages.filter((m) => m.ruleId === RULE || m.fatal).map((m) => `${r.filePath}:${m.line} ${m.message}`),
  );
  t.deepEqual(hits, []);
  t.true(results.length > 50, `linted ${results.length} files of core/`);
});

test('a core file importing an adapter is reported, one error per import', async (t) => {
  const planted = [
    "import { cniRoute } from '../../cni/plugin/route.js';",
    "import { startDockerPlugin } from '../../swarm/driver/daemon.js';",
    "import type { MesosConfigOptions } from '../../mesos/config.js';",
    "import { Harness } from '../../e2e/harness/index.js';",
    "import { commandModules } from '../../app/commands.js';",
    "export const lazy = () => import('../../cni/install.js');",
    "import { DEFAULT_NETWORK } from '../workload/types.js';",
    'export const used: unknown[] = [cniRoute, startDockerPlugin, Harness, commandModules, DEFAULT_NETWORK];',
    'export type M = MesosConfigOptions;',
  ].join('\n');
  // A file that is not on disk: lintText resolves its imports from the directory it names.
  const [result] = await untyped().lintText(planted, { filePath: `${ROOT}core/agent/planted-violation.ts` });
  const lines = result!.messages.filter((m) => m.ruleId === RULE).map((m) => m.line);
  t.deepEqual(lines, [1, 2, 3, 4, 5, 6], JSON.stringify(result!.messages, null, 1));
  t.regex(result!.messages[0]!.message, /core\/ depends on no adapter: cni\//);

  // The same imports outside core/ are fine: adapters and app/ depend on core, not the other way round.
  const [outside] = await untyped().lintText(planted.replaceAll('../../', '../').replace('../workload/', '../core/workload/'), {
    filePath: `${ROOT}app/planted.ts`,
  });
  t.deepEqual(
    outside!.messages.filter((m) => m.ruleId === RULE),
    [],
  );
});
