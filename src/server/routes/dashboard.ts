import type { FastifyInstance } from 'fastify';
import { nlError } from '../../errors.ts';
import type { FeatureRecord } from '../../registry/registry.ts';
import { pca2 } from '../../store/projection.ts';
import type { ServerContext } from '../context.ts';
import { healthSchema, mapSchema, seriesSchema, type HealthQuery, type MapQuery } from '../schemas/dashboard.ts';
import { SeriesRecorder, type SeriesOptions } from '../series.ts';
import { refOf } from '../../refs.ts';

interface MapResult {
  feature: string;
  variant: string;
  rows: number;
  explained: [number, number];
  fields: string[];
  points: Array<{ id: string; x: number; y: number; metadata: Record<string, unknown> }>;
  computedAt: string;
}

/** What the dashboard reads beyond the registry: embedding health, the map, the charts. Scope serve. */
export async function dashboardRoutes(app: FastifyInstance, ctx: ServerContext & { series?: SeriesOptions }): Promise<void> {
  const { store, auth, lanes } = ctx;
  const config = { scope: 'serve' as const };
  const series = new SeriesRecorder(ctx.metrics, ctx.series);
  app.addHook('onReady', async () => series.start());
  app.addHook('onClose', async () => series.stop());
  // One map per variant: a PCA is cheap, but not something to redo on every page view.
  const maps = new Map<string, Promise<MapResult>>();

  const embedding = async (ref: string): Promise<FeatureRecord> => {
    const f = await store.registry.resolveFeature(ref);
    if (f.kind !== 'embedding') throw nlError('NL_UNSUPPORTED', `${ref} is a ${f.kind} feature; this is about embeddings`);
    return f;
  };

  app.get('/features/:feature/health', { schema: healthSchema, config }, async (request) => {
    const { feature } = request.params as { feature: string };
    const { against } = request.query as HealthQuery;
    await auth.requireFeatures(request.apiKey, against === undefined ? [feature] : [feature, against]);
    const f = await embedding(feature);
    request.servedFeature = refOf(f);
    const report = store.health.report(f);
    return against === undefined ? report : { ...report, comparison: store.health.compare(f, await embedding(against)) };
  });

  app.get('/features/:feature/map', { schema: mapSchema, config }, async (request) => {
    const { feature } = request.params as { feature: string };
    const { refresh } = request.query as MapQuery;
    await auth.requireFeatures(request.apiKey, [feature]);
    const f = await store.servable(feature, 'embedding');
    request.servedFeature = refOf(f);
    const key = refOf(f);
    if (refresh === 'true') maps.delete(key);
    let map = maps.get(key);
    if (!map) {
      map = lanes.heavy.run(async () => {
        const ids = store.health.sample(f);
        const records = (await (await store.collection(f)).get(ids)).filter((r) => r !== null);
        const { points, explained } = pca2(records.map((r) => r.vector));
        return {
          feature: f.name,
          variant: f.variant,
          rows: f.rows,
          explained,
          fields: f.metadata,
          points: records.map((r, i) => ({ id: r.id, x: points[i][0], y: points[i][1], metadata: r.metadata ?? {} })),
          computedAt: new Date().toISOString(),
        };
      });
      maps.set(key, map);
      map.catch(() => maps.delete(key));
    }
    return map;
  });

  app.get('/dashboard/series', { schema: seriesSchema, config }, async () => series.read());
}
