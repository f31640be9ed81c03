#!/usr/bin/env node
// The CLI runs compiled JavaScript from dist/ (built by `npm ci` or `npm run build`). In nearline's own checkout,
// NEARLINE_FROM_SOURCE=1 runs src/ through tsx instead; the test runner sets it so tests exercise the sources.
if (process.env.NEARLINE_FROM_SOURCE === '1') {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/index.ts');
} else {
  try {
    await import('../dist/cli/index.js');
  } catch (e) {
    if (e?.code !== 'ERR_MODULE_NOT_FOUND' || !String(e.message).includes('dist/cli/index.js')) throw e;
    process.stderr.write('nearline: dist/ is not built; run `npm run build` in the nearline checkout\n');
    process.exitCode = 1;
  }
}
