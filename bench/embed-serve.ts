/**
 * Embedding on the JS thread vs in worker threads, on the demo's data (SpamAssassin mails, the packaged USE
 * lite model, as `nearline demo` builds them), in the same command:
 *
 * 1. rate: texts/s embedding the demo's mails in batches of 128 (as materialize does), the model on the
 *    main thread vs a pool of `--workers` threads (default: the cores), rounds interleaved;
 * 2. serving: a server over the demo's text feature, 4 clients sending text queries (new texts, cache off)
 *    while 1 client sends plain vector queries; p50/p99 of both, plus vector p99 with no text load, with
 *    NEARLINE_EMBED_WORKERS=0 vs the pool, rounds interleaved. The load runs in a child process, so it
 *    never shares the server's event loop.
 *
 *   npm run bench:embed-serve -- [--rounds 3] [--texts 256] [--docs 500] [--seconds 10] [--workers N]
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import YAML from 'yaml';
import { definitions, loadMails } from '../src/cli/commands/demo.ts';
import { loadDefinitions } from '../src/config.ts';
import { createEmbeddingModel } from '../src/providers/index.ts';
import { build } from '../src/server/app.ts';
import { FeatureStore } from '../src/store/feature-store.ts';

const { values: args } = parseArgs({
  options: {
    role: { type: 'string', default: 'main' },
    url: { type: 'string' },
    rounds: { type: 'string', default: '3' },
    texts: { type: 'string', default: '256' },
    docs: { type: 'string', default: '500' },
    seconds: { type: 'string', default: '10' },
    workers: { type: 'string', default: String(availableParallelism()) },
  },
});
const ROUNDS = Number(args.rounds);
const SECONDS = Number(args.seconds);
const WORKERS = Number(args.workers);
const TEXT_CLIENTS = 4;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const spread = (xs: number[], digits = 1) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
const log = (m: string) => process.stderr.write(`[embed-serve] ${m}\n`);

// ---------------------------------------------------------------------------------------------
// Load (child process): text clients and one vector client against a running server.

interface LoadResult {
  vectorAlone: number[];
  vector: number[];
  text: number[];
  errors: number;
}

async function load(url: string, texts: string[]): Promise<LoadResult> {
  const out: LoadResult = { vectorAlone: [], vector: [], text: [], errors: 0 };
  const post = async (body: unknown, into: number[]) => {
    const t = performance.now();
    const res = await fetch(`${url}/v1/nearest`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    await res.arrayBuffer();
    if (res.ok) into.push(performance.now() - t);
    else out.errors++;
  };
  let seed = 1;
  const rand = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
  const vector = () => Array.from({ length: 512 }, () => rand() - 0.5);
  const until = (ms: number) => performance.now() + ms;
  const vectorClient = async (end: number, into: number[]) => {
    while (performance.now() < end) await post({ feature: 'mail_vec', k: 10, query: { vector: vector() } }, into);
  };
  await vectorClient(until(1000), []);
  await vectorClient(until((SECONDS * 1000) / 2), out.vectorAlone);
  const end = until(SECONDS * 1000);
  let next = 0;
  const textClient = async () => {
    // Every query a text not seen before: the embedding cache is off anyway, and so is any coalescing.
    while (performance.now() < end) await post({ feature: 'mail_vec', k: 10, query: { text: `${texts[next++ % texts.length]} #${next}` } }, out.text);
  };
  await Promise.all([vectorClient(end, out.vector), ...Array.from({ length: TEXT_CLIENTS }, textClient)]);
  return out;
}

function runLoad(url: string, textsFile: string): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', fileURLToPath(import.meta.url), '--role', 'load', '--url', url, '--seconds', String(SECONDS), '--texts', textsFile],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(stdout) as LoadResult) : reject(new Error(`load exited ${code}`))));
  });
}

// ---------------------------------------------------------------------------------------------

async function rate(texts: string[]) {
  const spec = { name: 'use', version: '1', runtime: 'use', pooling: 'mean' as const, normalize: true, maxTokens: 256 };
  const main = await createEmbeddingModel(spec);
  const pool = await createEmbeddingModel(spec, { workers: WORKERS });
  await main.open();
  await pool.open();
  const out = { main: [] as number[], pool: [] as number[], stallMain: [] as number[], stallPool: [] as number[] };
  // Texts/s, and the longest the event loop went without running a 1 ms timer meanwhile.
  const pass = async (model: typeof main) => {
    let last = performance.now();
    let stall = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      stall = Math.max(stall, now - last);
      last = now;
    }, 1);
    const t = performance.now();
    for (let i = 0; i < texts.length; i += 128) await model.embed(texts.slice(i, i + 128));
    const seconds = (performance.now() - t) / 1000;
    clearInterval(timer);
    return { rate: texts.length / seconds, stall: Math.max(stall, performance.now() - last) };
  };
  await pass(pool);
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, model] of r % 2
      ? ([
          ['pool', pool],
          ['main', main],
        ] as const)
      : ([
          ['main', main],
          ['pool', pool],
        ] as const)) {
      const x = await pass(model);
      out[name].push(x.rate);
      out[name === 'main' ? 'stallMain' : 'stallPool'].push(x.stall);
      log(`rate round ${r + 1} ${name}: ${x.rate.toFixed(1)} texts/s, longest event-loop stall ${x.stall.toFixed(0)} ms`);
    }
  }
  await main.close();
  await pool.close();
  return out;
}

async function serving(home: string, textsFile: string): Promise<Record<'main' | 'pool', LoadResult[]>> {
  const out: Record<'main' | 'pool', LoadResult[]> = { main: [], pool: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const mode of r % 2 ? (['pool', 'main'] as const) : (['main', 'pool'] as const)) {
      const store = FeatureStore.open({ home, embedWorkers: mode === 'main' ? 0 : WORKERS, embeddingCacheBytes: 0 });
      await store.model('use', '1');
      const app = await build({ store });
      const address = await app.listen({ port: 0, host: '127.0.0.1' });
      const result = await runLoad(address, textsFile);
      out[mode].push(result);
      log(
        `serve round ${r + 1} ${mode}: text p50 ${pct(result.text, 50).toFixed(1)} p99 ${pct(result.text, 99).toFixed(1)} ms (${result.text.length}); ` +
          `vector p99 alone ${pct(result.vectorAlone, 99).toFixed(1)}, with text ${pct(result.vector, 99).toFixed(1)} ms; errors ${result.errors}`,
      );
      await app.close();
      await store.close();
    }
  }
  return out;
}

async function main(): Promise<void> {
  const docs = Number(args.docs);
  const mails = loadMails(docs + 2000);
  const indexed = mails.slice(0, docs);
  const queryTexts = mails.slice(docs).map((m) => m.text);
  const home = mkdtempSync(path.join(tmpdir(), 'nearline-embed-serve-'));
  writeFileSync(path.join(home, 'mail.jsonl'), indexed.map((m) => JSON.stringify(m)).join('\n') + '\n');
  writeFileSync(path.join(home, 'demo.yaml'), YAML.stringify(definitions()));
  const textsFile = path.join(home, 'queries.json');
  writeFileSync(textsFile, JSON.stringify(queryTexts));

  const rates = await rate(mails.slice(0, Number(args.texts)).map((m) => m.text));

  const store = FeatureStore.open({ home, embedWorkers: WORKERS });
  await store.apply(await loadDefinitions(path.join(home, 'demo.yaml')));
  const t = performance.now();
  await store.materialize('mail_vec@v1', { progress: false });
  log(`materialized ${docs} mails in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  await store.close();
  const serve = await serving(home, textsFile);

  const ratios = rates.pool.map((p, i) => p / rates.main[i]);
  const row = (mode: 'main' | 'pool') => {
    const rs = serve[mode];
    const f = (get: (r: LoadResult) => number[], p: number) => spread(rs.map((r) => pct(get(r), p)));
    return `| ${mode === 'main' ? 'main thread (NEARLINE_EMBED_WORKERS=0)' : `pool of ${WORKERS}`} | ${f((r) => r.text, 50)} | ${f((r) => r.text, 99)} | ${spread(rs.map((r) => r.text.length / SECONDS))} | ${f((r) => r.vectorAlone, 99)} | ${f((r) => r.vector, 99)} | ${rs.reduce((n, r) => n + r.errors, 0)} |`;
  };
  const report = [
    `# Embedding off the JS thread (${cpus()[0]?.model ?? 'CPU'}, ${cpus().length} cores, Node ${process.version}, ${new Date().toISOString().slice(0, 16)}Z)`,
    '',
    `Medians over ${ROUNDS} interleaved rounds, (min–max) in brackets.`,
    '',
    `Demo embedding rate, USE lite on ${args.texts} SpamAssassin mails in batches of 128 (texts/s): main thread ${spread(rates.main)}, ` +
      `pool of ${WORKERS} ${spread(rates.pool)}; ratio per round ${spread(ratios, 2)}x. Longest event-loop stall during a pass (ms): ` +
      `main thread ${spread(rates.stallMain, 0)}, pool ${spread(rates.stallPool, 0)}.`,
    '',
    `Serving, ${docs} mails indexed, ${TEXT_CLIENTS} clients sending text queries and 1 sending vector queries for ${SECONDS} s, after ${SECONDS / 2} s of vector queries alone (ms):`,
    '',
    '| embedding | text p50 | text p99 | text queries/s | vector p99 alone | vector p99 with text load | errors |',
    '|---|---:|---:|---:|---:|---:|---:|',
    row('main'),
    row('pool'),
    '',
  ].join('\n');
  process.stdout.write(report);
  const out = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results', 'embed-serve.md');
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, report);
  log(`wrote ${out}`);
}

if (args.role === 'load') {
  const { readFileSync } = await import('node:fs');
  const texts = JSON.parse(readFileSync(args.texts!, 'utf8')) as string[];
  process.stdout.write(JSON.stringify(await load(args.url!, texts)));
} else {
  await main();
}
