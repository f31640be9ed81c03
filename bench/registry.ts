/**
 * What serving pays the registry per request: resolving a bare feature name (alias prod -> variant), on the SQLite
 * file, on PostgreSQL with the resolved reference cached (LISTEN/NOTIFY keeps it current), and on PostgreSQL read
 * every time (the two queries an uncached resolve makes). Also how long an alias switch made through one registry
 * takes to reach another process's cache. Interleaved in rounds so a noisy machine slows every contender alike.
 * Starts its own throwaway PostgreSQL.
 *
 *   npm run bench:registry [-- --rounds 15 --calls 2000]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadDefinitions } from '../src/config.ts';
import type { Registry } from '../src/registry/registry.ts';
import { FeatureStore } from '../src/store/feature-store.ts';
import { wordDefs, writeDefs, writeWords } from '../test/helpers/fixtures.ts';
import { startPostgres } from '../test/helpers/postgres.ts';

const { values: args } = parseArgs({ options: { rounds: { type: 'string', default: '15' }, calls: { type: 'string', default: '2000' } } });
const ROUNDS = Number(args.rounds);
const CALLS = Number(args.calls);
const BIN = join(import.meta.dirname, '..', 'bin', 'nearline.mjs');

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const server = await startPostgres();
  const home = mkdtempSync(join(tmpdir(), 'nearline-bench-registry-'));
  const stores: FeatureStore[] = [];
  try {
    writeWords(home, 20, 8);
    const url = await server.createDatabase();
    const open = async (registry: string) => {
      const store = FeatureStore.open({ home, registry });
      stores.push(store);
      await store.apply(await loadDefinitions(writeDefs(home, wordDefs(8))));
      return store.registry;
    };
    const sqlite = await open(join(home, 'nearline.db'));
    const postgres = await open(url);
    const uncached = (r: Registry) => async () => {
      const alias = await r.getAlias('word_vec', 'prod');
      await r.getFeature('word_vec', alias!.variant);
    };
    const contenders: Array<{ name: string; call: () => Promise<unknown>; perCallUs: number[] }> = [
      { name: 'sqlite file: resolveFeature', call: () => sqlite.resolveFeature('word_vec'), perCallUs: [] },
      { name: 'postgres: resolveFeature (cached, LISTEN/NOTIFY)', call: () => postgres.resolveFeature('word_vec'), perCallUs: [] },
      { name: 'postgres: the two reads of an uncached resolve', call: uncached(postgres), perCallUs: [] },
    ];
    for (let round = 0; round < ROUNDS; round++) {
      for (const c of contenders) {
        await c.call();
        const t0 = performance.now();
        for (let i = 0; i < CALLS; i++) await c.call();
        c.perCallUs.push(((performance.now() - t0) * 1000) / CALLS);
      }
    }

    // An alias switch by another process: how long until this process resolves the new variant.
    const v2 = wordDefs(8, { variant: 'v2' });
    v2.aliases = [];
    await stores[1].apply(await loadDefinitions(writeDefs(home, v2)));
    const seenMs: number[] = [];
    for (let round = 0; round < 5; round++) {
      const target = round % 2 === 0 ? 'v2' : 'v1';
      await postgres.resolveFeature('word_vec');
      const r = spawnSync(process.execPath, [BIN, 'alias', 'set', 'word_vec', 'prod', target, '--force', '--home', home, '--registry', url], {
        encoding: 'utf8',
        env: { ...process.env, NEARLINE_FROM_SOURCE: '1' },
      });
      if (r.status !== 0) throw new Error(r.stderr);
      // Measured from the child's exit (its commit is done by then) to the first resolve that sees the switch.
      const t0 = performance.now();
      while ((await postgres.resolveFeature('word_vec')).variant !== target) await new Promise((resolve) => setImmediate(resolve));
      seenMs.push(performance.now() - t0);
    }

    const base = median(contenders[0].perCallUs);
    const lines = [
      `# Registry reads on the serving path`,
      ``,
      `\`npm run bench:registry -- --rounds ${ROUNDS} --calls ${CALLS}\`, ${cpus().length} cores, Node ${process.version}, PostgreSQL on loopback.`,
      `Median over ${ROUNDS} rounds of ${CALLS} sequential calls.`,
      ``,
      `| contender | µs per call | vs sqlite |`,
      `|---|---:|---:|`,
      ...contenders.map((c) => `| ${c.name} | ${median(c.perCallUs).toFixed(1)} | ${(median(c.perCallUs) / base).toFixed(2)}x |`),
      ``,
      `Alias switch by another process (\`nearline alias set\`), from its exit to this process resolving the new variant: ` +
        `median ${median(seenMs).toFixed(1)} ms, max ${Math.max(...seenMs).toFixed(1)} ms over ${seenMs.length} switches.`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    for (const s of stores) await s.close();
    await server.stop();
    rmSync(home, { recursive: true, force: true });
  }
}

await main();
