/**
 * Serving replicas benchmark: `POST /v1/nearest` (k=10) queries/s of one `nearline serve` node against two
 * nodes sharing one SQLite registry file, one Redis log (appendfsync always) and one snapshot folder, on
 * loopback; then the replica lag under a steady push load: rows pushed to node A, the time from A's
 * acknowledgement until node B serves the row (top hit of a query by its own vector), p50/p99.
 *
 *   npm run bench:replicas [-- --rows 20000] [-- --dims 64] [-- --seconds 8] [-- --connections 16] [-- --rounds 3]
 *                          [-- --push-rate 200] [-- --lag-seconds 15]
 *
 * Nodes are pinned one core each with `taskset -c 0` / `-c 1` when taskset exists. The load generator
 * (autocannon, in this process) is not pinned: on a 2-core machine it competes with the nodes for the same
 * cores, and with two nodes there is no core left for it; the table says so. Two nodes get twice the
 * connections (each node sees what one node sees). One node and two nodes alternate over rounds; the ratio is
 * of the medians. The CPU time the nodes used (from /proc) gives queries per
 * node CPU-second: when that stays the same with two nodes, a core per node would serve twice as many.
 * Results: a table on stdout and in bench/results/replicas.md.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadDefinitions } from '../src/config.ts';
import { FeatureStore } from '../src/store/feature-store.ts';
import { seeded, wordDefs, writeDefs, writeWords } from '../test/helpers/fixtures.ts';
import { startRedisServer } from '../test/helpers/redis-server.ts';
import { kill9, serveProcess } from '../test/helpers/serve.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const RESULTS = join(HERE, 'results');

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '20000' },
    dims: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '8' },
    connections: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '3' },
    'push-rate': { type: 'string', default: '200' },
    'lag-seconds': { type: 'string', default: '15' },
  },
});
const ROWS = Number(args.rows);
const DIMS = Number(args.dims);
const SECONDS = Number(args.seconds);
const CONNECTIONS = Number(args.connections);
const ROUNDS = Number(args.rounds);
const PUSH_RATE = Number(args['push-rate']);
const LAG_SECONDS = Number(args['lag-seconds']);
/** Rows per push in the lag phase: PUSH_RATE rows/s as 10 pushes a second. */
const PUSHES_PER_SECOND = 10;

const log = (msg: string) => process.stderr.write(`[replicas] ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}
const median = (xs: number[]) =>
  percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );

type Autocannon = (
  opts: Record<string, unknown>,
  done: (err: Error | null, res: { requests: { total: number }; non2xx: number; errors: number }) => void,
) => unknown;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

/** CPU seconds (user + system) a process has used, from /proc (NaN where there is none). */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime, fields 14 and 15 of stat(5), in clock ticks (100 a second on Linux).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

interface Run {
  qps: number;
  /** Node CPU seconds per second of the run: how many cores the nodes got. */
  cores: number;
  /** Queries per node CPU-second. */
  perCpu: number;
}

/** A query load on `urls`, with the CPU the node processes `pids` used meanwhile. */
async function measured(urls: string[], pids: number[], bodies: string[], connections = CONNECTIONS): Promise<Run> {
  const before = pids.map(cpuSeconds);
  const qps = await queryLoad(urls, bodies, connections);
  const used = pids.reduce((s, pid, i) => s + cpuSeconds(pid) - before[i], 0);
  return { qps, cores: used / SECONDS, perCpu: (qps * SECONDS) / used };
}

/** Closed-loop query load over `urls` (connections split evenly); queries/s answered 2xx. */
async function queryLoad(urls: string[], bodies: string[], connections = CONNECTIONS): Promise<number> {
  const res = await new Promise<{ requests: { total: number }; non2xx: number; errors: number }>((resolve, reject) =>
    autocannon(
      {
        url: urls.map((u) => `${u}/v1/nearest`),
        connections,
        duration: SECONDS,
        requests: bodies.map((body) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body })),
      },
      (err, r) => (err ? reject(err) : resolve(r)),
    ),
  );
  if (res.non2xx || res.errors) log(`  ${res.non2xx} non-2xx, ${res.errors} errors`);
  return (res.requests.total - res.non2xx) / SECONDS;
}

async function post(url: string, body: unknown): Promise<{ hits: Array<{ id: string }> }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (res.status !== 200) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  return res.json();
}

/**
 * Rows pushed to A at a steady rate; for one row of each push, the time from A's 200 until B's top hit for the
 * row's vector is that row. Returns the lags in ms.
 */
async function lagUnderPushes(a: string, b: string): Promise<number[]> {
  const rnd = seeded(7);
  const rowsPerPush = Math.max(1, Math.round(PUSH_RATE / PUSHES_PER_SECOND));
  const lags: number[] = [];
  const watches: Array<Promise<void>> = [];
  const start = performance.now();
  for (let i = 0; performance.now() - start < LAG_SECONDS * 1000; i++) {
    const due = start + (i * 1000) / PUSHES_PER_SECOND;
    await sleep(Math.max(0, due - performance.now()));
    const rows = Array.from({ length: rowsPerPush }, (_, j) => ({
      id: `p${i}_${j}`,
      vec: Array.from({ length: DIMS }, () => rnd() - 0.5),
      lang: 'en',
      freq: 1,
    }));
    const watched = rows[rows.length - 1];
    await post(`${a}/v1/sources/words/push`, { rows });
    const acked = performance.now();
    watches.push(
      (async () => {
        for (;;) {
          const r = await post(`${b}/v1/nearest`, { feature: 'word_vec@v1', k: 1, query: { vector: watched.vec } });
          if (r.hits[0]?.id === watched.id) return void lags.push(performance.now() - acked);
          if (performance.now() - acked > 30_000) throw new Error(`row ${watched.id} not on B after 30 s`);
          await sleep(2);
        }
      })(),
    );
  }
  await Promise.all(watches);
  return lags;
}

async function main(): Promise<void> {
  const pin = spawnSync('taskset', ['--version']).status === 0 && cpus().length >= 2;
  const scratch = mkdtempSync(join(tmpdir(), 'nearline-bench-replicas-'));
  const redis = await startRedisServer({ durable: true });
  const children: ChildProcess[] = [];
  try {
    const shared = join(scratch, 'shared');
    await mkdir(shared, { recursive: true });
    writeWords(shared, ROWS, DIMS, 3);
    const defsFile = writeDefs(shared, wordDefs(DIMS));
    const settings = { registryFile: join(shared, 'nearline.db'), snapshots: join(shared, 'snapshots'), live: { log: redis.url } };
    log(`building word_vec@v1: ${ROWS} rows, ${DIMS}-d, into the shared snapshots`);
    const store = FeatureStore.open({ home: join(scratch, 'builder'), ...settings });
    try {
      await store.apply(await loadDefinitions(defsFile));
      await store.materialize('word_vec@v1', { progress: false });
    } finally {
      await store.close();
    }
    const env = {
      ...process.env,
      NEARLINE_REGISTRY: settings.registryFile,
      NEARLINE_SNAPSHOTS: settings.snapshots,
      NEARLINE_LOG: redis.url,
      NEARLINE_LOG_LEVEL: 'warn',
    };
    const start = async (name: string, cpu: number) => {
      const home = join(scratch, name);
      await mkdir(home, { recursive: true });
      const served = await serveProcess(home, { env, prefix: pin ? ['taskset', '-c', String(cpu)] : [], readyMs: 120_000 });
      children.push(served.child);
      return served;
    };
    const a = await start('a', 0);
    const b = await start('b', 1);

    const rnd = seeded(11);
    const bodies = Array.from({ length: 500 }, () =>
      JSON.stringify({ feature: 'word_vec@v1', k: 10, query: { vector: Array.from({ length: DIMS }, () => rnd() - 0.5) } }),
    );
    // Warm both nodes: first queries pay for lazy work (JIT, page cache).
    await queryLoad([a.url, b.url], bodies);
    const one: Run[] = [];
    const two: Run[] = [];
    // Two nodes get twice the connections, so each node sees the load one node sees: capacity against capacity.
    // One node at half the connections too: what a lighter load per node alone does to its efficiency.
    const half: Run[] = [];
    const [pa, pb] = [a.child.pid!, b.child.pid!];
    for (let r = 0; r < ROUNDS; r++) {
      one.push(await measured([a.url], [pa], bodies));
      two.push(await measured([a.url, b.url], [pa, pb], bodies, 2 * CONNECTIONS));
      half.push(await measured([a.url], [pa], bodies, CONNECTIONS / 2));
      log(
        `round ${r + 1}: one node ${one[r].qps.toFixed(0)} q/s on ${one[r].cores.toFixed(2)} cores, two nodes ${two[r].qps.toFixed(0)} q/s on ${two[r].cores.toFixed(2)} cores`,
      );
    }

    log(`lag: ${PUSH_RATE} rows/s pushed to A for ${LAG_SECONDS} s, B watched`);
    const lags = (await lagUnderPushes(a.url, b.url)).sort((x, y) => x - y);

    for (const c of children) await kill9(c);
    const pick = (runs: Run[], k: keyof Run) => median(runs.map((x) => x[k]));
    const ratio = pick(two, 'qps') / pick(one, 'qps');
    // With a core per node, each node serves what it serves per CPU-second: two cores against one.
    const projected = (2 * pick(two, 'perCpu')) / pick(one, 'perCpu');
    const runs = (xs: Run[]) => xs.map((x) => x.qps.toFixed(0)).join(', ');
    const load = loadavg()
      .map((x) => x.toFixed(2))
      .join(' ');
    const table = [
      `| setup | queries/s (median of ${ROUNDS}) | runs | cores the nodes got | queries per node CPU-second |`,
      '|---|---:|---|---:|---:|',
      `| one node${pin ? ' (taskset -c 0)' : ''}, ${CONNECTIONS} connections | ${pick(one, 'qps').toFixed(0)} | ${runs(one)} | ${pick(one, 'cores').toFixed(2)} | ${pick(one, 'perCpu').toFixed(0)} |`,
      `| two nodes${pin ? ' (taskset -c 0, -c 1)' : ''}, ${2 * CONNECTIONS} connections split | ${pick(two, 'qps').toFixed(0)} | ${runs(two)} | ${pick(two, 'cores').toFixed(2)} | ${pick(two, 'perCpu').toFixed(0)} |`,
      `| one node, ${CONNECTIONS / 2} connections | ${pick(half, 'qps').toFixed(0)} | ${runs(half)} | ${pick(half, 'cores').toFixed(2)} | ${pick(half, 'perCpu').toFixed(0)} |`,
      `| two / one, measured | ${ratio.toFixed(2)}x | | | |`,
      `| two / one with a core per node (2 x queries per CPU-second of two nodes / one node's) | ${projected.toFixed(2)}x | target >= 1.6x | | |`,
      '',
      `| replica lag, ${PUSH_RATE} rows/s pushed to A (${PUSHES_PER_SECOND} pushes/s), ${lags.length} rows watched on B | ms |`,
      '|---|---:|',
      `| p50 | ${percentile(lags, 50).toFixed(1)} |`,
      `| p99 | ${percentile(lags, 99).toFixed(1)} |`,
      `| max | ${lags[lags.length - 1].toFixed(1)} |`,
    ].join('\n');
    const notes = [
      `Machine: ${cpus().length} cores (${cpus()[0].model}), load average at the end ${load}; other work ran on it meanwhile.`,
      `Data: ${ROWS} random ${DIMS}-d rows, cosine, M=16, efConstruction=200, ef=100; k=10 vector queries, ${CONNECTIONS} autocannon connections per node, ${SECONDS} s per run.`,
      pin
        ? 'Each node is pinned to its own core; the load generator (autocannon, unpinned, in the bench process) shares those two cores, so with two nodes it takes CPU from them: the two-node figure is a lower bound of what two machines would serve.'
        : 'taskset was not available: nodes and the load generator share every core.',
      "Cores the nodes got: their CPU time (user + system, /proc/PID/stat) over the run's wall time. Queries per node CPU-second staying put from one node to two means the nodes do not slow each other down; with a core each, two nodes would then serve twice what one serves on its core.",
      'Lag: time from the push acknowledgement on A until B answers the row as its own top hit (B polled every 2 ms).',
    ].join('\n');
    const command = `npm run bench:replicas -- --rows ${ROWS} --dims ${DIMS} --seconds ${SECONDS} --connections ${CONNECTIONS} --rounds ${ROUNDS} --push-rate ${PUSH_RATE} --lag-seconds ${LAG_SECONDS}`;
    const out = `# Serving replicas: one node vs two, replica lag\n\n\`${command}\`\n\n${table}\n\n${notes}\n`;
    process.stdout.write(`${out}\n`);
    await mkdir(RESULTS, { recursive: true });
    await writeFile(join(RESULTS, 'replicas.md'), out);
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await redis.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}

await main();
