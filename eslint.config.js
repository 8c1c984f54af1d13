// ESLint flat config. For now one rule: core/ never imports an adapter, the composition root or the testbed
// (cni/, swarm/, mesos/, kubernetes/, e2e/, app/). app/test/boundaries.test.ts shows it failing on a planted
// violation. Imports are resolved the way TypeScript's NodeNext does (`./x.js` names `./x.ts`), so the rule sees
// the file an import really reaches.
import { createNodeResolver, importX } from 'eslint-plugin-import-x';
import tseslint from 'typescript-eslint';

const ADAPTERS = ['cni', 'swarm', 'mesos', 'kubernetes', 'e2e', 'app'];

export default [
  { ignores: ['node_modules/**', 'dist/**', 'charts/**'] },
  {
    files: ['**/*.ts', '**/*.js'],
    languageOptions: { parser: tseslint.parser, ecmaVersion: 2022, sourceType: 'module' },
    plugins: { 'import-x': importX },
    settings: {
      'import-x/resolver-next': [
        createNodeResolver({ extensions: ['.ts', '.js', '.json', '.node'], extensionAlias: { '.js': ['.ts', '.js'] } }),
      ],
    },
    rules: {
      'import-x/no-restricted-paths': ['error', {
        zones: ADAPTERS.map((dir) => ({
          target: './core',
          from: `./${dir}`,
          message: `core/ depends on no adapter: ${dir}/ plugs into core through its public interfaces, and app/ wires them (see core/README.md).`,
        })),
      }],
    },
  },
];
