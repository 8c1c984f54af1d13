// ESLint flat config. Two parts:
// - core/ never imports an adapter, the composition root or the testbed (cni/, swarm/, mesos/, kubernetes/, e2e/,
//   app/). app/test/boundaries.test.ts shows it failing on a planted violation. Imports are resolved the way
//   TypeScript's NodeNext does (`./x.js` names `./x.ts`), so the rule sees the file an import really reaches.
// - typescript-eslint's type-aware recommended rules on every .ts file (through tsconfig.json). No formatting
//   rules: prettier formats (`npm run format`), eslint only finds bugs.
import { createNodeResolver, importX } from 'eslint-plugin-import-x';
import tseslint from 'typescript-eslint';

const ADAPTERS = ['cni', 'swarm', 'mesos', 'kubernetes', 'e2e', 'app'];

export default [
  { ignores: ['node_modules/**', 'dist/**', 'charts/**'] },
  ...tseslint.configs.recommendedTypeChecked.map((c) => ({ ...c, files: ['**/*.ts'] })),
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // Store, CNI and driver methods are async to conform to their (async) interfaces, with or without an await.
      '@typescript-eslint/require-await': 'off',
      // `_`-prefixed names are deliberate: destructuring a key away, an argument a callback signature requires.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' }],
    },
  },
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
      'import-x/no-restricted-paths': [
        'error',
        {
          zones: ADAPTERS.map((dir) => ({
            target: './core',
            from: `./${dir}`,
            message: `core/ depends on no adapter: ${dir}/ plugs into core through its public interfaces, and app/ wires them (see core/README.md).`,
          })),
        },
      ],
    },
  },
];
