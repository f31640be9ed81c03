// A log compaction in a worker thread (frames.ts: compactInWorker): writes the compacted file and reports its size.
import { parentPort, workerData } from 'node:worker_threads';
import { writeCompacted } from './frames.ts';

const { files, out } = workerData as { files: string[]; out: string };
try {
  parentPort!.postMessage({ bytes: await writeCompacted(files, out) });
} catch (e) {
  parentPort!.postMessage({ error: (e as Error).message });
}
