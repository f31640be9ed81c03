// Lint configuration run by `npm run lint` (and by .ci/run): ESLint's and typescript-eslint's recommended rules.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'native/**', 'ui/vendor/**', 'bench/data/**', 'test/artifacts/**', 'models/**', 'indexes/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      // `const { a, ...rest } = x` drops `a` on purpose; a leading underscore marks an unused parameter.
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true, argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['ui/**/*.js'],
    languageOptions: { globals: { ...globals.browser } },
  },
  {
    // Tests poke at malformed input and untyped JSON bodies on purpose.
    files: ['test/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
