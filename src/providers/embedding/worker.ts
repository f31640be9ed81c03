/**
 * One embedding worker thread of a pool (pool.ts): opens its own copy of the model, then embeds each batch
 * it is sent and returns the vectors packed in one transferred buffer.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createEmbeddingModel } from '../index.ts';
import { serializeError, type WorkerMessage } from './pool.ts';
import type { ModelSpec } from './types.ts';

const port = parentPort!;
const { spec } = workerData as { spec: ModelSpec };
const send = (msg: WorkerMessage, transfer: ArrayBuffer[] = []) => port.postMessage(msg, transfer);

try {
  const model = await createEmbeddingModel(spec);
  await model.open();
  // Batches run one at a time, in the order they arrive; the pool sends the next only after a reply.
  port.on('message', async ({ id, texts }: { id: number; texts: string[] }) => {
    try {
      const vectors = await model.embed(texts);
      const dims = vectors[0]?.length ?? model.dims;
      const data = new Float32Array(vectors.length * dims);
      vectors.forEach((v, i) => data.set(v, i * dims));
      send({ type: 'done', id, dims, data }, [data.buffer]);
    } catch (e) {
      send({ type: 'failed', id, error: serializeError(e) });
    }
  });
  send({ type: 'ready', dims: model.dims });
} catch (e) {
  send({ type: 'failed', id: -1, error: serializeError(e) });
}
