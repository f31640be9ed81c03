// Child process for the crash test: keeps writing and flushing generations until it is killed.
import { createHnswProvider } from '../../src/providers/vector/hnsw/provider.ts';

const [home, name, quantization = 'none'] = process.argv.slice(2) as [string, string, 'none' | 'int8' | undefined];
const dims = 32;
const provider = createHnswProvider({}, { name: 'local', home });
await provider.open();
const c = await provider.collection({ name, dims, metric: 'l2', index: { M: 16, efConstruction: 40, quantization }, metadataFields: ['gen'] });
const row = (id: string, x: number) => ({ id, vector: new Float32Array(dims).fill(x), metadata: { gen: x } });
await c.upsert(Array.from({ length: 20_000 }, (_, i) => row(`base${i}`, -i)));
for (let gen = 1; ; gen++) {
  await c.upsert([row(`r${gen}`, gen)]);
  await c.flush();
  process.stdout.write(`${gen}\n`);
}
