import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Native addons (better-sqlite3, hnswlib, onnxruntime) are safest in separate processes.
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // bin/nearline.mjs runs src/ through tsx rather than dist/, so CLI tests exercise the code under test.
    env: { NEARLINE_FROM_SOURCE: '1' },
  },
});
