import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHnswProvider } from '../../src/providers/vector/hnsw.ts';
import { vectorProviderSuite } from './vector.suite.ts';

vectorProviderSuite('hnsw', async () => {
  const home = await mkdtemp(join(tmpdir(), 'nearline-hnsw-'));
  return {
    provider: createHnswProvider({}, { name: 'local', home }),
    reopen: async () => createHnswProvider({}, { name: 'local', home }),
    cleanup: () => rm(home, { recursive: true, force: true }),
  };
});

// Forces filtered queries through the graph walk and its widening, which the defaults route to an exact scan at this size.
vectorProviderSuite('hnsw, filtered queries through the graph', async () => {
  const home = await mkdtemp(join(tmpdir(), 'nearline-hnsw-'));
  const options = { exactScanBelow: 0, exactScanSelectivity: 0 };
  return {
    provider: createHnswProvider(options, { name: 'local', home }),
    reopen: async () => createHnswProvider(options, { name: 'local', home }),
    cleanup: () => rm(home, { recursive: true, force: true }),
  };
});
