/**
 * Embedding throughput: nearline's `onnx` runtime vs a raw onnxruntime-node session vs the transformers.js
 * pipeline, on one generated encoder of all-MiniLM-L6-v2's shape (throughput does not depend on weight
 * values), plus the packaged USE runtime. Tokenization is inside the timing on every side.
 *
 *   npm run bench:embed -- [--threads 1] [--rounds 3] [--batches 1,8,32,128] [--out bench/results/embed.md]
 *
 * Contenders run interleaved batch by batch, in a rotating order; each cell reports the median over rounds,
 * and ratios are medians of paired per-batch time ratios, so noise on a shared machine hits every side alike.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Tokenizer } from '@huggingface/tokenizers';
import { pipeline, type FeatureExtractionPipeline } from '@huggingface/transformers';
import * as ort from 'onnxruntime-node';
import { createOnnxModel, onnxSessionOptions, poolTokens } from '../src/providers/embedding/onnx.ts';
import type { EmbeddingModel, ModelSpec } from '../src/providers/embedding/types.ts';
import { createUseModel } from '../src/providers/embedding/use.ts';
import { makeEncoder } from '../scripts/make-encoder.ts';
import { mulberry32 as rng } from '../scripts/random.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    threads: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '3' },
    batches: { type: 'string', default: '1,8,32,128' },
    kinds: { type: 'string', default: 'short,long,mixed' },
    latency: { type: 'string', default: '100' },
    out: { type: 'string', default: join(root, 'bench', 'results', 'embed.md') },
  },
});
const THREADS = Number(args.threads);
const ROUNDS = Number(args.rounds);
const BATCHES = args.batches!.split(',').map(Number);
const KINDS = args.kinds!.split(',') as Kind[];
const LATENCY_CALLS = Number(args.latency);

// all-MiniLM-L6-v2's shape.
const SHAPE = { layers: 6, hidden: 384, heads: 12, ffn: 1536, vocab: 30522, maxPositions: 512, seed: 7 };
const MAX_TOKENS = 256;

// ---------------------------------------------------------------------------------------------
// Texts: English-like, deterministic; about one word in ten is rare and splits into ## pieces.

type Kind = 'short' | 'long' | 'mixed';

const COMMON = `the of and to a in is it you that he was for on are with as his they be at one have this from or had by
not word but what some we can out other were all there when up use your how said an each she which do their time if will
way about many then them write would like so these her long make thing see him two has look more day could go come did
number sound no most people my over know water than call first who may down side been now find any new work part take
get place made live where after back little only round man year came show every good me give our under name very through
just form sentence great think say help low line turn cause much mean before move right boy old too same tell does set
three want air well also play small end put home read hand port large spell add even land here must big high such follow
market price stock customer search review rating movie album season player team`.split(/\s+/);

function makeTexts(kind: Kind, count: number, seed: number): string[] {
  const rand = rng(seed);
  const word = () => {
    if (rand() < 0.1) {
      const n = 6 + Math.floor(rand() * 6);
      return Array.from({ length: n }, () => String.fromCharCode(97 + Math.floor(rand() * 26))).join('');
    }
    return COMMON[Math.floor(rand() * COMMON.length)];
  };
  // Mixed lengths are log-uniform over 5..200 words: mostly short, with a long tail, like titles and bodies.
  const length = () => (kind === 'short' ? 10 : kind === 'long' ? 200 : Math.round(Math.exp(Math.log(5) + rand() * Math.log(40))));
  return Array.from({ length: count }, () => {
    const n = length();
    const words = Array.from({ length: n }, (_, i) => (i > 0 && i % 12 === 11 ? `${word()}.` : word()));
    return `${words.join(' ')}.`;
  });
}

// ---------------------------------------------------------------------------------------------
// Contenders.

interface Contender {
  name: string;
  embed(texts: string[]): Promise<unknown>;
  close(): Promise<void>;
}

function spec(runtime: string, path?: string): ModelSpec {
  return { name: 'bench', version: '1', runtime, path, pooling: 'mean', normalize: true, maxTokens: MAX_TOKENS, threads: THREADS };
}

async function nearlineOnnx(path: string): Promise<Contender> {
  const model = createOnnxModel(spec('onnx', path));
  await model.open();
  return { name: 'nearline onnx', embed: (t) => model.embed(t), close: () => model.close() };
}

/** What a user would write by hand: tokenize, pad the batch to its longest text, run, mean-pool, normalize. */
async function rawSession(path: string): Promise<Contender> {
  const tokenizer = new Tokenizer(
    JSON.parse(readFileSync(join(path, 'tokenizer.json'), 'utf8')),
    JSON.parse(readFileSync(join(path, 'tokenizer_config.json'), 'utf8')),
  );
  const session = await ort.InferenceSession.create(join(path, 'onnx', 'model.onnx'), onnxSessionOptions(THREADS));
  const embed = async (texts: string[]) => {
    const ids: number[][] = texts.map((t) => {
      const x: number[] = tokenizer.encode(t).ids;
      return x.length > MAX_TOKENS ? [...x.slice(0, MAX_TOKENS - 1), x[x.length - 1]] : x;
    });
    const seq = Math.max(...ids.map((x) => x.length));
    const n = ids.length;
    const inputIds = new BigInt64Array(n * seq);
    const mask = new BigInt64Array(n * seq);
    ids.forEach((x, b) =>
      x.forEach((id, t) => {
        inputIds[b * seq + t] = BigInt(id);
        mask[b * seq + t] = 1n;
      }),
    );
    const out = await session.run({
      input_ids: new ort.Tensor('int64', inputIds, [n, seq]),
      attention_mask: new ort.Tensor('int64', mask, [n, seq]),
      token_type_ids: new ort.Tensor('int64', new BigInt64Array(n * seq), [n, seq]),
    });
    const vectors = poolTokens(
      out.last_hidden_state.data as Float32Array,
      ids.map((x) => x.length),
      seq,
      SHAPE.hidden,
      'mean',
    );
    for (const v of vectors) {
      const inv = 1 / Math.hypot(...v);
      for (let i = 0; i < v.length; i++) v[i] *= inv;
    }
    return vectors;
  };
  return { name: 'raw onnxruntime', embed, close: () => session.release() };
}

async function transformersPipeline(path: string): Promise<Contender> {
  const pipe = (await pipeline('feature-extraction', path, {
    local_files_only: true,
    dtype: 'fp32',
    device: 'cpu',
    session_options: { intraOpNumThreads: THREADS, interOpNumThreads: 1 },
  })) as FeatureExtractionPipeline;
  return {
    name: 'transformers.js',
    embed: (t) => pipe(t, { pooling: 'mean', normalize: true }),
    close: () => pipe.dispose(),
  };
}

async function useRuntime(): Promise<Contender> {
  const model: EmbeddingModel = createUseModel(spec('use'));
  await model.open();
  return { name: 'nearline use (USE lite)', embed: (t) => model.embed(t), close: () => model.close() };
}

// ---------------------------------------------------------------------------------------------
// Measurement.

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const percentile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

/** Texts per timed pass: enough for a stable number, few enough that long text at batch 128 stays bearable. */
const PASS = { short: 128, long: 16, mixed: 64 } as const;

/**
 * One round over `texts` in batches: every batch goes to every contender back to back, in a rotating order,
 * so a noisy second on a shared machine slows all sides alike. Returns seconds per batch per contender.
 */
async function round(contenders: Contender[], texts: string[], batch: number, r: number): Promise<number[][]> {
  const seconds = contenders.map(() => [] as number[]);
  for (let i = 0, step = 0; i < texts.length; i += batch, step++) {
    const slice = texts.slice(i, i + batch);
    for (let k = 0; k < contenders.length; k++) {
      const j = (k + r + step) % contenders.length;
      const started = performance.now();
      await contenders[j].embed(slice);
      seconds[j].push((performance.now() - started) / 1000);
    }
  }
  return seconds;
}

interface Cell {
  kind: Kind;
  batch: number;
  /** Contender name -> sentences/s per round. */
  rates: Map<string, number[]>;
  /** Contender name -> seconds per batch, rounds concatenated; index i is the same batch for everyone. */
  times: Map<string, number[]>;
}

async function main(): Promise<void> {
  const modelDir = join(root, 'bench', 'data', 'minilm-shape');
  const stamp = join(modelDir, 'shape.json');
  if (!existsSync(stamp) || readFileSync(stamp, 'utf8') !== JSON.stringify(SHAPE)) {
    const t = performance.now();
    makeEncoder({ ...SHAPE, out: modelDir });
    writeFileSync(stamp, JSON.stringify(SHAPE));
    console.log(`generated ${modelDir} in ${Math.round(performance.now() - t)} ms`);
  }

  const contenders = [await nearlineOnnx(modelDir), await rawSession(modelDir), await transformersPipeline(modelDir), await useRuntime()];
  const [ours, raw, tjs] = contenders.map((c) => c.name);
  const cells: Cell[] = [];

  for (const kind of KINDS) {
    for (const batch of BATCHES) {
      const count = Math.ceil(Math.max(batch, PASS[kind]) / batch) * batch;
      // One seed per kind: every batch size sees the same texts (a prefix of them), so rows compare.
      const texts = makeTexts(kind, count, { short: 1, long: 2, mixed: 3 }[kind]);
      const cell: Cell = { kind, batch, rates: new Map(contenders.map((c) => [c.name, []])), times: new Map(contenders.map((c) => [c.name, []])) };
      for (const c of contenders) await c.embed(texts.slice(0, batch));
      for (let r = 0; r < ROUNDS; r++) {
        const seconds = await round(contenders, texts, batch, r);
        contenders.forEach((c, j) => {
          cell.rates.get(c.name)!.push(texts.length / seconds[j].reduce((a, b) => a + b, 0));
          cell.times.get(c.name)!.push(...seconds[j]);
        });
      }
      cells.push(cell);
      const line = contenders.map((c) => `${c.name} ${median(cell.rates.get(c.name)!).toFixed(1)}`).join(' | ');
      console.log(`${kind.padEnd(5)} batch ${String(batch).padStart(3)}: ${line}`);
    }
  }

  // p50 latency of one short sentence, contenders interleaved call by call.
  const sentence = makeTexts('short', 1, 42);
  const latencies = new Map(contenders.map((c) => [c.name, [] as number[]]));
  for (const c of contenders) for (let i = 0; i < 5; i++) await c.embed(sentence);
  for (let i = 0; i < LATENCY_CALLS; i++) {
    // Rotated like the throughput rounds: whoever runs right after USE's TensorFlow.js pays for its garbage.
    for (let k = 0; k < contenders.length; k++) {
      const c = contenders[(i + k) % contenders.length];
      const t = performance.now();
      await c.embed(sentence);
      latencies.get(c.name)!.push(performance.now() - t);
    }
  }
  for (const c of contenders) await c.close();

  // Throughput ratio a/b as the median over batches of b's time / a's time on the very same batch.
  const ratio = (cell: Cell, a: string, b: string) => median(cell.times.get(b)!.map((t, i) => t / cell.times.get(a)![i]));
  const rows = cells.map((cell) => {
    const rate = (n: string) => median(cell.rates.get(n)!).toFixed(1);
    return `| ${cell.kind} | ${cell.batch} | ${rate(ours)} | ${rate(raw)} | ${rate(tjs)} | ${rate(contenders[3].name)} | ${ratio(cell, ours, raw).toFixed(2)}x | ${ratio(cell, ours, tjs).toFixed(2)}x |`;
  });
  const latencyRows = contenders.map((c) => {
    const l = latencies.get(c.name)!;
    return `| ${c.name} | ${median(l).toFixed(2)} | ${percentile(l, 90).toFixed(2)} |`;
  });
  const worstRaw = Math.min(...cells.map((c) => ratio(c, ours, raw)));
  const mixed32 = cells.find((c) => c.kind === 'mixed' && c.batch === 32);
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const report = [
    '# Embedding throughput',
    '',
    `Model: generated encoder of all-MiniLM-L6-v2's shape (${SHAPE.layers} layers, hidden ${SHAPE.hidden}, ${SHAPE.heads} heads, FFN ${SHAPE.ffn}, ` +
      `${SHAPE.vocab}-token WordPiece vocabulary), fp32, mean pooling, L2-normalized, max ${MAX_TOKENS} tokens. ` +
      `Texts: short ~10 words, long ~200 words, mixed 5-200 words log-uniform. Tokenization is timed on every side.`,
    '',
    `Machine: ${cpu}, ${cpus().length} cores, Node ${process.version}, onnxruntime-node ${ort.env.versions.common}; ` +
      `intra-op threads ${THREADS}; ${ROUNDS} interleaved rounds per cell (median); ${new Date().toISOString().slice(0, 16)}Z.`,
    '',
    'Sentences per second (higher is better): median over rounds. Ratios: median over every timed batch of the ' +
      "other side's time / ours on that same batch (paired, so machine noise cancels).",
    '',
    `| texts | batch | ${ours} | ${raw} | ${tjs} | ${contenders[3].name} | ours / raw | ours / transformers.js |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
    '',
    `Targets: ours >= 0.9x raw at every batch size (lowest here: ${worstRaw.toFixed(2)}x); ` +
      `ours >= 1.5x transformers.js at batch 32 on mixed text (here: ${mixed32 ? ratio(mixed32, ours, tjs).toFixed(2) + 'x' : 'not measured'}).`,
    '',
    `Latency of one short sentence, ${LATENCY_CALLS} calls each, interleaved (ms):`,
    '',
    '| runtime | p50 | p90 |',
    '|---|---:|---:|',
    ...latencyRows,
    '',
  ].join('\n');
  console.log(`\n${report}`);
  mkdirSync(dirname(args.out!), { recursive: true });
  writeFileSync(args.out!, report);
  console.log(`wrote ${args.out}`);
}

await main();
