import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDefinitions } from '../../src/config.ts';
import { build } from '../../src/server/app.ts';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { cosineDistance, drift, HealthMonitor, isDrifting, thresholdsFromEnv, VectorStats, DEFAULT_THRESHOLDS } from '../../src/store/health.ts';
import { seeded, tempDir, writeDefs } from '../helpers/fixtures.ts';

const DIMS = 16;
const BIN = path.resolve(import.meta.dirname, '../../bin/nearline.mjs');

/** Gaussian vectors around `mean` with standard deviation `sd` per dimension, seeded. */
function gaussian(n: number, mean: number[], sd: number, seed: number): Float32Array[] {
  const rnd = seeded(seed);
  const normal = () => Math.sqrt(-2 * Math.log(rnd() || 1e-12)) * Math.cos(2 * Math.PI * rnd());
  return Array.from({ length: n }, () => Float32Array.from(mean, (m) => m + sd * normal()));
}

/** `v` rotated by `angle` radians in the plane of dimensions 0 and 1. */
function rotate(v: number[], angle: number): number[] {
  const out = [...v];
  out[0] = v[0] * Math.cos(angle) - v[1] * Math.sin(angle);
  out[1] = v[0] * Math.sin(angle) + v[1] * Math.cos(angle);
  return out;
}

const MEAN = Array.from({ length: DIMS }, (_, i) => (i === 0 ? 3 : i === 1 ? 0 : 0.5));

function stats(vectors: Float32Array[]): VectorStats {
  const s = new VectorStats(DIMS);
  for (const v of vectors) s.add(v);
  return s;
}

describe('drift math on generated shifts', () => {
  const baseline = stats(gaussian(5000, MEAN, 0.3, 1));

  it('running sums give the norm mean and spread, the centroid and zero vectors', () => {
    const s = stats(
      [Float32Array.from([3, 4]), Float32Array.from([0, 0]), Float32Array.from([6, 8])].map((v) => Float32Array.from({ length: DIMS }, (_, i) => v[i] ?? 0)),
    );
    expect(s.count).toBe(3);
    expect(s.normMean).toBeCloseTo(5);
    expect(s.normStd).toBeCloseTo(Math.sqrt((25 + 25 + 0) / 3));
    expect(Array.from(s.centroid().slice(0, 3))).toEqual([3, 4, 0]);
    expect(s.zero).toBe(1);
    const merged = new VectorStats(DIMS).merge(s).merge(s);
    expect(merged.normMean).toBeCloseTo(5);
    expect(merged.count).toBe(6);
    expect(VectorStats.fromJSON(DIMS, JSON.parse(JSON.stringify(s.toJSON())))).toEqual(s);
  });

  it('the same distribution does not drift', () => {
    const d = drift(baseline, stats(gaussian(1000, MEAN, 0.3, 2)));
    expect(d.centroidDistance).toBeLessThan(0.001);
    expect(Math.abs(d.normShift)).toBeLessThan(0.01);
    expect(isDrifting(d, 1000, DEFAULT_THRESHOLDS)).toBe(false);
  });

  it.each([0.2, 0.5, 1.0])('a centroid rotated by %s rad drifts by about 1 - cos(angle)', (angle) => {
    const d = drift(baseline, stats(gaussian(2000, rotate(MEAN, angle), 0.3, 3)));
    // Rotating the mean in one plane leaves the other dimensions' share: the expected distance is computable.
    const expected = cosineDistance(rotate(MEAN, angle), MEAN);
    expect(d.centroidDistance).toBeGreaterThan(expected * 0.9);
    expect(d.centroidDistance).toBeLessThan(expected * 1.1 + 0.002);
    expect(Math.abs(d.normShift)).toBeLessThan(0.02);
    expect(isDrifting(d, 2000, DEFAULT_THRESHOLDS)).toBe(expected > DEFAULT_THRESHOLDS.centroidDistance);
  });

  it('vectors scaled by 1.3 shift the norm by +30% and keep the direction', () => {
    const d = drift(baseline, stats(gaussian(2000, MEAN, 0.3, 4).map((v) => v.map((x) => x * 1.3))));
    expect(d.normShift).toBeGreaterThan(0.27);
    expect(d.normShift).toBeLessThan(0.33);
    expect(d.centroidDistance).toBeLessThan(0.001);
    expect(isDrifting(d, 2000, DEFAULT_THRESHOLDS)).toBe(true);
  });

  it('too few recent vectors are not judged', () => {
    const d = drift(baseline, stats(gaussian(20, rotate(MEAN, 1), 0.3, 5)));
    expect(d.centroidDistance).toBeGreaterThan(0.1);
    expect(isDrifting(d, 20, DEFAULT_THRESHOLDS)).toBe(false);
  });

  it('thresholds come from the environment, and nonsense there is a coded error', () => {
    expect(thresholdsFromEnv({})).toEqual(DEFAULT_THRESHOLDS);
    expect(thresholdsFromEnv({ NEARLINE_DRIFT_CENTROID: '0.2', NEARLINE_DRIFT_NORM: '0.5', NEARLINE_DRIFT_MIN_SAMPLES: '10' })).toEqual({
      centroidDistance: 0.2,
      normShift: 0.5,
      minSamples: 10,
    });
    expect(() => thresholdsFromEnv({ NEARLINE_DRIFT_CENTROID: 'high' })).toThrow(expect.objectContaining({ code: 'NL_BAD_REQUEST' }));
    expect(() => thresholdsFromEnv({ NEARLINE_DRIFT_MIN_SAMPLES: '1.5' })).toThrow(expect.objectContaining({ code: 'NL_BAD_REQUEST' }));
  });
});

describe('health of a variant: materialization is the baseline, writes are the recent window', () => {
  let home: string;
  let store: FeatureStore;
  const rows = gaussian(600, MEAN, 0.3, 10).map((v, i) => ({ id: `e${i}`, vec: Array.from(v), group: i % 2 ? 'odd' : 'even' }));
  // Two exact duplicates of earlier rows and two zero vectors.
  rows.push({ id: 'dup1', vec: rows[3].vec, group: 'odd' }, { id: 'dup2', vec: rows[4].vec, group: 'even' });
  rows.push({ id: 'zero1', vec: new Array(DIMS).fill(0), group: 'odd' }, { id: 'zero2', vec: new Array(DIMS).fill(0), group: 'odd' });

  const defs = (variant: string) => ({
    providers: [{ name: 'local', kind: 'hnsw' }],
    entities: [{ name: 'thing', key: 'id' }],
    sources: [{ name: 'things', variant: 'v1', kind: 'jsonl', path: 'things.jsonl' }],
    features: [
      {
        name: 'thing_vec',
        variant,
        entity: 'thing',
        source: 'things@v1',
        kind: 'embedding',
        vector: { column: 'vec' },
        dims: DIMS,
        metric: 'dot',
        provider: 'local',
        metadata: ['group'],
      },
    ],
  });

  beforeAll(async () => {
    home = tempDir();
    writeFileSync(path.join(home, 'things.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    writeDefs(home, { ...defs('v1'), features: [...defs('v1').features, ...defs('v2').features] });
    store = FeatureStore.open({ home, drift: { centroidDistance: 0.05, normShift: 0.1, minSamples: 50 } });
    await store.apply(await loadDefinitions(path.join(home, 'defs.yaml')));
    await store.materialize('thing_vec@v1', { progress: false });
  });

  afterAll(async () => {
    await store?.close();
  });

  const v1 = async () => (await store.registry.getFeature('thing_vec', 'v1'))!;

  it('materialization records the baseline: count, norms, zero and duplicate vectors, centroid', async () => {
    const r = store.health.report(await v1());
    const all = stats(rows.map((x) => Float32Array.from(x.vec)));
    expect(r.baseline.count).toBe(rows.length);
    expect(r.baseline.normMean).toBeCloseTo(all.normMean, 4);
    expect(r.baseline.normStd).toBeCloseTo(all.normStd, 4);
    expect(r.baseline.zero).toBe(2);
    expect(r.baseline.duplicates).toBe(3); // dup1, dup2 and the second zero vector
    expect(r.baseline.centroid).toHaveLength(DIMS);
    expect(r.baseline.centroid[0]).toBeCloseTo(all.centroid()[0], 4);
    expect(r.recent.count).toBe(0);
    expect(r.status).toBe('warming');
    expect(store.health.sample(await v1()).length).toBe(rows.length);
  });

  it('writes like the baseline do not drift; rotated writes do, and say by how much', async () => {
    const same = gaussian(100, MEAN, 0.3, 11);
    await store.writeVectors(
      'thing_vec@v1',
      same.map((v, i) => ({ id: `s${i}`, vector: Array.from(v) })),
    );
    let r = store.health.report(await v1());
    expect(r.recent.count).toBe(100);
    expect(r.status).toBe('ok');
    expect(r.drifting).toBe(false);

    const turned = gaussian(400, rotate(MEAN, 0.6), 0.3, 12);
    await store.writeVectors(
      'thing_vec@v1',
      turned.map((v, i) => ({ id: `t${i}`, vector: Array.from(v) })),
    );
    r = store.health.report(await v1());
    expect(r.recent.count).toBe(500);
    expect(r.status).toBe('drifting');
    expect(r.drift!.centroidDistance).toBeGreaterThan(0.05);
  });

  it('health survives a restart', async () => {
    const before = store.health.report(await v1());
    await store.close();
    store = FeatureStore.open({ home, drift: { centroidDistance: 0.05, normShift: 0.1, minSamples: 50 } });
    const after = store.health.report(await v1());
    expect(after).toEqual(before);
    // Duplicate detection still knows the vectors written before the restart.
    await store.writeVectors('thing_vec@v1', [{ id: 'again', vector: rows[7].vec }]);
    expect(store.health.report(await v1()).recent.duplicates).toBe(before.recent.duplicates + 1);
  });

  it('the recent window slides: enough writes like the baseline end the drift', async () => {
    const window = new HealthMonitor({
      dir: path.join(home, 'window-test'),
      window: 400,
      thresholds: { centroidDistance: 0.05, normShift: 0.1, minSamples: 50 },
    });
    const f = { ...(await v1()), name: 'w' };
    window.observe({ ...f, status: 'materializing' }, gaussian(1000, MEAN, 0.3, 20));
    window.observe(f, gaussian(400, rotate(MEAN, 0.8), 0.3, 21));
    expect(window.report(f).status).toBe('drifting');
    window.observe(f, gaussian(400, MEAN, 0.3, 22));
    const r = window.report(f);
    expect(r.recent.count).toBe(400);
    expect(r.status).toBe('ok');
    window.close();
  });

  it('is served over HTTP and in /metrics', async () => {
    const app = await build({ store, warm: false });
    try {
      const res = await app.inject({ method: 'GET', url: '/v1/features/thing_vec@v1/health' });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual(JSON.parse(JSON.stringify(store.health.report(await v1()))));
      expect(res.json()).toMatchObject({ status: 'drifting', drifting: true, baseline: { zero: 2, duplicates: 3 } });
      const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
      expect(metrics).toMatch(/\nnearline_embedding_drifting\{feature="thing_vec",variant="v1"\} 1\n/);
      expect(metrics).toMatch(/\nnearline_embedding_vectors\{feature="thing_vec",variant="v1",window="baseline"\} 604\n/);
      expect(metrics).toMatch(/\nnearline_embedding_zero_vectors\{feature="thing_vec",variant="v1",window="baseline"\} 2\n/);
      expect(metrics).toMatch(/\nnearline_embedding_drift_centroid_distance\{feature="thing_vec",variant="v1"\} 0\.\d+/);
      const missing = await app.inject({ method: 'GET', url: '/v1/features/nope/health' });
      expect(missing.statusCode).toBe(404);
      expect(missing.json().error.code).toBe('NL_FEATURE_NOT_FOUND');
      const badQuery = await app.inject({ method: 'GET', url: '/v1/features/thing_vec/health?colour=1' });
      expect(badQuery.json().error.code).toBe('NL_BAD_REQUEST');
    } finally {
      await app.close();
    }
  });

  it('nearline stats prints it, exits 3 while drifting, and --json has every number', () => {
    store.health.close(); // what the CLI reads is on disk
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, [BIN, ...args, '--home', home], { encoding: 'utf8', env: { ...process.env, NEARLINE_DRIFT_MIN_SAMPLES: '50' } });
    const r = cli('stats', 'thing_vec@v1');
    expect(r.status, r.stderr).toBe(3);
    expect(r.stdout).toMatch(/^thing_vec@v1 {2}16 dims {2}status drifting {2}\(DRIFTING\)/);
    expect(r.stdout).toMatch(/baseline +604 +\d\.\d{4} +\d\.\d{4} +2 +3/);
    expect(r.stdout).toMatch(/centroid cosine distance 0\.\d{4} \(threshold 0\.05\)/);
    const j = JSON.parse(cli('stats', 'thing_vec@v1', '--json').stdout);
    expect(j).toMatchObject({ feature: 'thing_vec', variant: 'v1', status: 'drifting', baseline: { count: 604, zero: 2 } });
    expect(j.baseline.centroid).toHaveLength(DIMS);
    expect(cli('stats', 'nope')).toMatchObject({ status: 1, stderr: expect.stringContaining('NL_FEATURE_NOT_FOUND') });
    expect(cli('stats')).toMatchObject({ status: 2 });
  });

  it('compares two variants: a rotated second variant is far from the first', async () => {
    writeFileSync(
      path.join(home, 'things.jsonl'),
      gaussian(300, rotate(MEAN, 1.2), 0.3, 30)
        .map((v, i) => JSON.stringify({ id: `e${i}`, vec: Array.from(v), group: 'x' }))
        .join('\n') + '\n',
    );
    await store.materialize('thing_vec@v2', { progress: false });
    const c = store.health.compare(await v1(), (await store.registry.getFeature('thing_vec', 'v2'))!);
    expect(c.a).toBe('thing_vec@v1');
    expect(c.centroidDistance).toBeGreaterThan(0.3);
    expect(c.b_stats.count).toBe(300);
  });
});
