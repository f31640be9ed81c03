import { spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { seeded, tempDir, wordDefs, writeDefs, writeWords } from '../helpers/fixtures.ts';
import { BIN, serveProcess } from '../helpers/serve.ts';

/*
 * Pushes acknowledged by a real server survive SIGKILL: 8 clients push rows (and delete some) while the server
 * snapshots in the background; the server is killed mid-stream, restarted, and every acknowledged row must be
 * there exactly as acknowledged (vector, scalar, metadata), every acknowledged deletion absent, and every
 * unacknowledged row either whole or absent, never a vector without its scalar.
 */

const DIMS = 16;
const CLIENTS = 8;

function cli(home: string, ...args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args, '--home', home], { encoding: 'utf8', cwd: home });
}

const children: ChildProcess[] = [];
afterAll(() => children.forEach((c) => c.kill('SIGKILL')));

async function serve(home: string, ...extra: string[]): Promise<{ url: string; child: ChildProcess }> {
  const served = await serveProcess(home, { args: extra, readyMs: 10_000 });
  children.push(served.child);
  return served;
}

async function post(url: string, body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

interface Row {
  id: string;
  vec: number[];
  lang: string;
  freq: number;
}

describe('pushes survive kill -9 of the server', () => {
  it('every acknowledged row is there exactly once after a restart, none half applied', { timeout: 180_000 }, async () => {
    const home = tempDir();
    writeWords(home, 2000, DIMS, 3);
    writeDefs(home, wordDefs(DIMS));
    expect(cli(home, 'apply', 'defs.yaml').status).toBe(0);
    expect(cli(home, 'materialize', 'word_vec@v1').status).toBe(0);
    expect(cli(home, 'materialize', 'word_freq@v1').status).toBe(0);

    const first = await serve(home, '--snapshot-rows', '300');
    // While the server holds the source's log, a second process cannot append to it; through the server it can.
    writeFileSync(path.join(home, 'more.jsonl'), `${JSON.stringify({ id: 'cli1', vec: Array(DIMS).fill(0.5), lang: 'en', freq: 9 })}\n`);
    const locked = cli(home, 'push', 'words', 'more.jsonl');
    expect(locked.status).toBe(1);
    expect(locked.stderr).toMatch(/NL_LOG_LOCKED.*--url/);
    const viaUrl = cli(home, 'push', 'words', 'more.jsonl', '--url', first.url);
    expect(viaUrl.status, viaUrl.stderr).toBe(0);
    expect(viaUrl.stdout).toMatch(/pushed 1 rows to words/);

    const acked = new Map<string, Row | null>();
    const unacked = new Map<string, Row | null>();
    acked.set('cli1', { id: 'cli1', vec: Array(DIMS).fill(0.5), lang: 'en', freq: 9 });
    let stop = false;
    const push = `${first.url}/v1/sources/words/push`;
    const clients = Array.from({ length: CLIENTS }, async (_, c) => {
      const rnd = seeded(100 + c);
      let n = 0;
      while (!stop) {
        const rows: Array<Row | { id: string; _deleted: true }> = [];
        const size = 1 + Math.floor(rnd() * 4);
        for (let j = 0; j < size; j++) {
          if (n > 4 && rnd() < 0.15) {
            rows.push({ id: `c${c}_${Math.floor(rnd() * n)}`, _deleted: true });
          } else {
            rows.push({
              id: `c${c}_${n++}`,
              vec: Array.from({ length: DIMS }, () => Math.round((rnd() - 0.5) * 1e4) / 1e4),
              lang: rnd() < 0.5 ? 'en' : 'fr',
              freq: Math.floor(rnd() * 1000),
            });
          }
        }
        // Within a batch the last row per id wins, as in the log.
        const outcome = await post(push, { rows }).then(
          (r) => r.status,
          () => 0,
        );
        for (const r of rows) {
          const state = '_deleted' in r ? null : (r as Row);
          if (outcome === 200) {
            acked.set(r.id, state);
            unacked.delete(r.id);
          } else unacked.set(r.id, state);
        }
        if (outcome !== 200 && outcome !== 0) throw new Error(`push answered ${outcome}`);
      }
    });
    // Long enough for background snapshots to run under the push load, then kill mid-stream.
    while (acked.size < 1500) await new Promise((r) => setTimeout(r, 20));
    first.child.kill('SIGKILL');
    await new Promise((r) => first.child.once('exit', r));
    stop = true;
    await Promise.all(clients);
    expect(acked.size).toBeGreaterThanOrEqual(1500);
    // Background snapshots ran under the load, so the restart loads one and replays only the log past it.
    const manifest = JSON.parse(readFileSync(path.join(home, 'indexes', 'word_vec__v1', 'manifest.json'), 'utf8'));
    expect(manifest.logOffset).toBeGreaterThan(0);

    const second = await serve(home);
    const ids = [...new Set([...acked.keys(), ...unacked.keys()])];
    const online = await post(`${second.url}/v1/online`, { ids, features: ['word_vec', 'word_freq'] });
    expect(online.status).toBe(200);
    const got = new Map<string, { vec: number[] | null; freq: number | null }>(
      online.body.rows.map((r: any) => [r.id, { vec: r.features.word_vec, freq: r.features.word_freq }]),
    );
    const unit = (v: number[]) => v.map((x) => x / Math.hypot(...v));
    const close = (a: number[], b: number[]) => a.every((x, i) => Math.abs(x - b[i]) < 1e-4);
    const matches = (g: { vec: number[] | null; freq: number | null }, state: Row | null | undefined) =>
      state == null ? g.vec === null && g.freq === null : g.freq === state.freq && g.vec !== null && close(g.vec, unit(state.vec));
    let deleted = 0;
    let checked = 0;
    for (const id of ids) {
      const g = got.get(id)!;
      // Never half applied: a vector without its scalar, or the reverse.
      expect(g.vec === null, id).toBe(g.freq === null);
      if (unacked.has(id)) {
        // The last write got no answer: it is either wholly there or not at all (then the acknowledged state is).
        expect(matches(g, unacked.get(id)) || matches(g, acked.get(id)), id).toBe(true);
      } else {
        const state = acked.get(id)!;
        if (state === null) deleted++;
        expect(matches(g, state), `${id}: ${JSON.stringify(g)} vs ${JSON.stringify(state)}`).toBe(true);
        checked++;
      }
    }
    expect(deleted).toBeGreaterThan(0);
    expect(checked).toBeGreaterThan(1400);
    // Metadata too: each acknowledged row is found under its own filter.
    const live = [...acked]
      .filter(([id, r]) => r !== null && !unacked.has(id))
      .map(([, r]) => r as Row)
      .slice(0, 300);
    for (const lang of ['en', 'fr']) {
      const mine = live.filter((r) => r.lang === lang);
      const res = await post(`${second.url}/v1/nearest/batch`, {
        feature: 'word_vec',
        k: 1,
        queries: mine.map((r) => ({ id: r.id })),
        filter: { field: 'lang', op: 'eq', value: lang },
      });
      expect(res.status).toBe(200);
      // Querying by id excludes the id itself, so the check is that every hit has the filtered language.
      const hitIds: string[] = res.body.results.flatMap((r: any) => r.hits.map((h: any) => h.id));
      const langOf = await post(`${second.url}/v1/nearest/batch`, {
        feature: 'word_vec',
        k: 1,
        queries: mine.map((r) => ({ vector: r.vec })),
        filter: { field: 'lang', op: 'eq', value: lang },
      });
      expect(langOf.body.results.map((r: any) => r.hits[0]?.id)).toEqual(mine.map((r) => r.id));
      expect(hitIds.length).toBe(mine.length);
    }
    second.child.kill('SIGTERM');
    await new Promise((r) => second.child.once('exit', r));
  });
});
