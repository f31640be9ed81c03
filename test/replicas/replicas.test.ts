import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { skipPostgresTests, startPostgres, type PostgresServer } from '../helpers/postgres.ts';
import { skipRedisTests, startRedisServer, type RedisServer } from '../helpers/redis-server.ts';
import { kill9, serveProcess } from '../helpers/serve.ts';
import { DIMS, makeHome, seeded, type Item } from '../server/fixture.ts';

/*
 * Two real `nearline serve` processes, each with its own home, on one PostgreSQL registry, one Redis log
 * (appendfsync always) and one snapshot folder: they answer alike, follow each other's pushes, and a node
 * killed with SIGKILL catches up from the newest snapshot and the log without embedding anything again.
 */

let redis: RedisServer;
let postgres: PostgresServer;
let shared: { home: string; items: Item[]; cleanup: () => void };
let env: NodeJS.ProcessEnv;
const homes: string[] = [];
const children: ChildProcess[] = [];

async function node(): Promise<{ url: string; child: ChildProcess; home: string }> {
  const home = mkdtempSync(path.join(tmpdir(), 'nearline-node-'));
  homes.push(home);
  return start(home);
}

async function start(home: string): Promise<{ url: string; child: ChildProcess; home: string }> {
  const served = await serveProcess(home, { env, args: ['--snapshot-seconds', '1'] });
  children.push(served.child);
  return { ...served, home };
}

async function call(url: string, method: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text };
}

const nearest = (url: string, req: object) => call(`${url}/v1/nearest`, 'POST', req);
const push = (url: string, rows: object[]) => call(`${url}/v1/sources/items/push`, 'POST', { rows });

/** The value of a Prometheus series on a node (summed over labels matching `labels`). */
async function metric(url: string, name: string, labels = ''): Promise<number> {
  const text = (await call(`${url}/metrics`, 'GET')).body as string;
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .filter((l) => l.includes(labels))
    .reduce((s, l) => s + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

/** Polls until `ok` holds (a generous deadline, not a timing assertion). */
async function eventually<T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(v)} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const rnd = seeded(99);
const row = (id: string, title: string) => ({
  id,
  vec: Array.from({ length: DIMS }, () => Math.round((rnd() - 0.5) * 1e4) / 1e4),
  lang: 'de',
  bucket: 7,
  price: 1,
  title,
});

beforeAll(async () => {
  [redis, postgres] = await Promise.all([startRedisServer({ durable: true }), startPostgres()]);
  const scratch = mkdtempSync(path.join(tmpdir(), 'nearline-shared-'));
  const settings = { registry: await postgres.createDatabase(), snapshots: path.join(scratch, 'snapshots'), live: { log: redis.url } };
  // The definitions, data and model files live with the registry; the variants are built once, into the shared snapshots.
  shared = await makeHome(settings);
  homes.push(scratch);
  env = { ...process.env, NEARLINE_REGISTRY: settings.registry, NEARLINE_SNAPSHOTS: settings.snapshots, NEARLINE_LOG: redis.url };
}, 180_000);

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await redis?.stop();
  await postgres?.stop();
  shared?.cleanup();
  for (const h of homes) rmSync(h, { recursive: true, force: true });
});

describe.skipIf(skipRedisTests() || skipPostgresTests())('serving replicas on one log', () => {
  it('two nodes answer alike, follow each other, and a killed node catches up without re-embedding', { timeout: 240_000 }, async () => {
    const a = await node();
    let b = await node();
    // Neither node materialized anything: both loaded the snapshots the build published.
    for (const h of [a.home, b.home]) expect(readdirSync(h)).not.toContain('indexes');

    // The same queries, the same answers: vectors, filters, text.
    const queries = [
      ...shared.items.slice(0, 5).map((it) => ({ feature: 'item_vec@prod', k: 10, query: { vector: it.vec } })),
      { feature: 'item_vec@v2', k: 5, query: { vector: shared.items[9].vec }, filter: { field: 'lang', op: 'eq', value: 'fr' } },
      { feature: 'doc_vec', k: 5, query: { text: shared.items[3].title } },
    ];
    for (const q of queries) {
      const [ra, rb] = [await nearest(a.url, q), await nearest(b.url, q)];
      expect(ra.status, JSON.stringify(ra.body)).toBe(200);
      expect(rb.body.hits).toEqual(ra.body.hits);
    }

    // A row pushed to A is served by B; and one pushed to B by A.
    const fresh = row('fresh', 'violet umbrella');
    expect((await push(a.url, [fresh])).status).toBe(200);
    const started = Date.now();
    const top = (url: string, vec: number[]) => nearest(url, { feature: 'item_vec@v1', k: 1, query: { vector: vec } }).then((r) => r.body.hits?.[0]?.id);
    await eventually(
      'B serves the row pushed to A',
      () => top(b.url, fresh.vec),
      (id) => id === 'fresh',
    );
    console.log(`row pushed to A served by B after ${Date.now() - started} ms`);
    const other = row('other', 'amber kettle');
    expect((await push(b.url, [other])).status).toBe(200);
    await eventually(
      'A serves the row pushed to B',
      () => top(a.url, other.vec),
      (id) => id === 'other',
    );

    // B dies; A takes more pushes (text rows, an overwrite, a deletion); B restarts and catches up.
    await kill9(b.child);
    const later = Array.from({ length: 40 }, (_, i) => row(`later${i}`, `${['quiet', 'loud', 'brisk'][i % 3]} lantern ${i}`));
    for (let i = 0; i < later.length; i += 10) expect((await push(a.url, later.slice(i, i + 10))).status).toBe(200);
    const moved = { ...fresh, vec: later[0].vec.map((x) => -x), title: 'moved umbrella' };
    expect((await push(a.url, [moved, { id: 'other', _deleted: true }])).status).toBe(200);
    const end = (await push(a.url, [row('last', 'final word')])).body.offset as number;
    const embeddedOnA = await metric(a.url, 'nearline_log_apply_embedded_texts_total');

    b = await start(b.home);
    const ready = await call(`${b.url}/readyz`, 'GET');
    expect(ready.body.status).toBe('ready');
    for (const l of ready.body.lag) expect(l.applied, `${l.feature}@${l.variant}`).toBeGreaterThanOrEqual(end);
    // Every pushed row is on B as on A: the exact vectors, the deletion, the text embeddings.
    const ids = ['fresh', 'other', 'last', ...later.map((r) => r.id)];
    const online = (url: string) => call(`${url}/v1/online`, 'POST', { ids, features: ['item_vec', 'doc_vec'] }).then((r) => r.body.rows);
    const [onA, onB] = [await online(a.url), await online(b.url)];
    expect(onB).toEqual(onA);
    expect(onB.find((r: any) => r.id === 'other').features).toEqual({ item_vec: null, doc_vec: null });
    expect(onB.every((r: any) => r.id === 'other' || r.features.doc_vec !== null)).toBe(true);
    expect(await top(b.url, moved.vec)).toBe('fresh');
    const text = await nearest(b.url, { feature: 'doc_vec', k: 1, query: { text: later[7].title } });
    expect(text.body.hits[0].id).toBe('later7');
    // The texts were embedded once, by the node they were pushed to: applying the log embedded nothing, on either node.
    expect(await metric(b.url, 'nearline_log_apply_embedded_texts_total')).toBe(0);
    expect(embeddedOnA).toBe(0);
    // After the catch-up the answers agree again (ef above the row count: the search is exhaustive on both).
    for (const q of queries.slice(0, 5)) {
      const wide = { ...q, feature: 'item_vec@v1', ef: 1000 };
      expect((await nearest(b.url, wide)).body.hits.map((h: any) => h.id)).toEqual((await nearest(a.url, wide)).body.hits.map((h: any) => h.id));
    }

    // The snapshots both nodes publish go to the one folder; the newest (by log offset) is current.
    const manifest = JSON.parse(readFileSync(path.join(env.NEARLINE_SNAPSHOTS!, 'item_vec__v1', 'manifest.json'), 'utf8'));
    expect(manifest.index).toMatch(/^index-\d+-[0-9a-f]{8}\.hnsw$/);
    expect(manifest.logOffset).toBeGreaterThan(0);

    // An alias moved through A is what B serves.
    const movedAlias = await call(`${a.url}/v1/registry/aliases/item_vec/prod`, 'PUT', { variant: 'v2' });
    expect(movedAlias.status, JSON.stringify(movedAlias.body)).toBe(200);
    const viaB = await nearest(b.url, { feature: 'item_vec@prod', k: 1, query: { vector: shared.items[0].vec } });
    expect(viaB.body.variant).toBe('v2');
    expect(await metric(b.url, 'nearline_variant_lag', 'item_vec')).toBe(0);
    for (const n of [a, b]) expect(await metric(n.url, 'nearline_log_follow_errors_total')).toBe(0);
  });
});
