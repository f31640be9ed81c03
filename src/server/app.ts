import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { nlError } from '../errors.ts';
import type { FeatureStore } from '../store/feature-store.ts';
import { Auth, type AuthOptions } from './auth.ts';
import type { ServerContext } from './context.ts';
import { frameworkErrors, installErrorHandlers } from './errors.ts';
import { Lane, type LaneOptions } from './limiter.ts';
import { Metrics } from './metrics.ts';
import type { SeriesOptions } from './series.ts';
import { registerHealthGauges } from './health-metrics.ts';
import { dashboardRoutes } from './routes/dashboard.ts';
import { featureRoutes } from './routes/features.ts';
import { nearestRoutes } from './routes/nearest.ts';
import { opsRoutes } from './routes/ops.ts';
import { registryRoutes } from './routes/registry.ts';
import { uiRoutes } from './routes/ui.ts';
import { lifecycleRoutes } from './routes/lifecycle.ts';
import { sourceRoutes } from './routes/sources.ts';
import { ErrorBody, HTTP_LIMITS } from './schemas/common.ts';
import { refOf } from '../refs.ts';

export interface BuildOptions {
  store: FeatureStore;
  /** fastify's logger option. Default false. */
  logger?: FastifyServerOptions['logger'];
  auth?: AuthOptions;
  /** Cheap searches in flight and waiting. Default 64 running, 1024 queued. */
  cheap?: LaneOptions;
  /**
   * Heavy work (see routes/nearest.ts): default one at a time, 64 queued, and while cheap searches are in
   * flight at most a third of the time, so a stream of slow queries cannot starve them.
   */
  heavy?: LaneOptions;
  /**
   * Pushes and vector writes: default 64 at once (concurrent pushes share log fsyncs) and 4096 queued. Their
   * work is mostly waiting on the disk and the index's threads, so they are bounded, not paced.
   */
  push?: LaneOptions;
  /** Load every materialized embedding feature's index before /readyz says ready. Default true. */
  warm?: boolean;
  /** How often the dashboard's charts sample the metrics, and how many samples they keep. Default every 5 s, 360. */
  series?: SeriesOptions;
}

/** The HTTP API as a fastify instance, not listening; `inject()` it in tests. */
export async function build(opts: BuildOptions): Promise<FastifyInstance> {
  const { store } = opts;
  const metrics = new Metrics();
  const app = Fastify({
    logger: opts.logger ?? false,
    // Two log lines per request cost more than the search at thousands of requests a second; latency and
    // status per route are in /metrics, and errors are logged where they are handled.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: HTTP_LIMITS.bodyBytes,
    // A JSON API: values keep their JSON types (no "10" -> 10), and unknown keys are errors, not dropped.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: true, allErrors: false } },
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // Requests that arrive while closing get NL_OVERLOADED from the hook below, in the one error format.
    return503OnClosing: false,
    frameworkErrors: frameworkErrors(metrics),
  });
  const cheap = new Lane('search', opts.cheap ?? { concurrency: 64, queue: 1024 });
  const ctx: ServerContext = {
    store,
    auth: new Auth(store.registry, opts.auth),
    metrics,
    lanes: {
      cheap,
      heavy: new Lane('heavy-query', opts.heavy ?? { concurrency: 1, queue: 64, yieldBetween: true, share: 1 / 3 }, cheap),
      push: new Lane('push', opts.push ?? { concurrency: 64, queue: 4096 }),
    },
    readiness: { ready: false, failed: [] },
  };

  app.decorateRequest('apiKey', null);
  app.addSchema(ErrorBody);
  installErrorHandlers(app, metrics);
  app.addHook('onResponse', async (request, reply) => {
    metrics.requests.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unmatched', feature: request.servedFeature ?? '', status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });
  let closing = false;
  app.addHook('preClose', async () => void (closing = true));
  app.addHook('onRequest', async () => {
    if (closing) throw nlError('NL_OVERLOADED', 'the server is shutting down; retry on another instance');
  });
  app.addHook('onClose', async () => metrics.close());

  metrics.gauge('nearline_index_rows', 'rows in each materialized embedding feature', async () =>
    (await store.indexSizes()).map((s) => ({ labels: { feature: s.feature, variant: s.variant }, value: s.rows })),
  );
  registerHealthGauges(metrics, store);
  const lanes = Object.values(ctx.lanes);
  metrics.gauge('nearline_lane_active', 'tasks running per admission lane', () => lanes.map((l) => ({ labels: { lane: l.name }, value: l.active })));
  metrics.gauge('nearline_lane_queued', 'tasks waiting per admission lane', () => lanes.map((l) => ({ labels: { lane: l.name }, value: l.queued })));
  metrics.gauge(
    'nearline_lane_rejected_total',
    'tasks refused with NL_OVERLOADED per admission lane',
    () => lanes.map((l) => ({ labels: { lane: l.name }, value: l.rejected })),
    'counter',
  );

  liveMetrics(metrics, store);

  await app.register(swagger, {
    openapi: {
      info: { title: 'nearline', version: '0.1.0', description: 'Embedding feature store: nearest-neighbour serving, online features, embeddings.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  await app.register(
    async (v1) => {
      v1.addHook('onRequest', async (request) => {
        request.apiKey = await ctx.auth.authenticate(request.headers.authorization);
        const scope = request.routeOptions.config.scope;
        if (scope) ctx.auth.requireScope(request.apiKey, scope);
      });
      await v1.register(nearestRoutes, ctx);
      await v1.register(featureRoutes, ctx);
      await v1.register(registryRoutes, ctx);
      await v1.register(sourceRoutes, ctx);
      await v1.register(lifecycleRoutes, ctx);
      await v1.register(dashboardRoutes, { ...ctx, ...(opts.series ? { series: opts.series } : {}) });
    },
    { prefix: '/v1' },
  );
  await app.register(opsRoutes, ctx);
  await app.register(uiRoutes, ctx);

  const warm = async () => {
    for (const f of await store.registry.listFeatures()) {
      if (f.kind !== 'embedding' || f.status !== 'materialized') continue;
      try {
        await store.collection(f);
        // A text feature's model too: its first load takes seconds, which no query should wait for.
        if (f.text) await store.model(f.text.model.name, f.text.model.version);
      } catch (e) {
        ctx.readiness.failed.push({ feature: refOf(f), message: (e as Error).message });
        app.log.error({ err: e, feature: refOf(f) }, 'index or model failed to load');
      }
    }
    ctx.readiness.ready = true;
  };
  if (opts.warm === false) ctx.readiness.ready = true;
  else app.addHook('onReady', async () => void warm());
  return app;
}

/** Pushes, the logs and snapshots, read from the store's live layer at scrape time. */
function liveMetrics(metrics: Metrics, store: FeatureStore): void {
  const shadow = (pick: (s: ReturnType<FeatureStore['shadowStats']>[number]) => number | null) => () =>
    store.shadowStats().flatMap((s) => {
      const value = pick(s);
      return value === null ? [] : [{ labels: { feature: s.feature, alias: s.alias, variant: s.variant }, value }];
    });
  metrics.gauge(
    'nearline_shadow_overlap',
    "mean overlap@k of mirrored queries with the alias's own answer, since this process started",
    shadow((s) => s.overlap),
  );
  metrics.gauge(
    'nearline_shadow_queries_total',
    'queries mirrored to a shadow variant and measured',
    shadow((s) => s.queries),
    'counter',
  );
  metrics.gauge(
    'nearline_shadow_errors_total',
    'mirrored queries that failed on the shadow variant',
    shadow((s) => s.errors),
    'counter',
  );
  let last: { at: number; stats: Promise<Awaited<ReturnType<FeatureStore['live']['stats']>>> } | undefined;
  // One read of the live layer per scrape, shared by the series below.
  const stats = () => {
    if (!last || Date.now() - last.at > 100) last = { at: Date.now(), stats: store.live.stats() };
    return last.stats;
  };
  const perSource = (pick: (s: Awaited<ReturnType<typeof stats>>['sources'][number]) => number) => async () =>
    (await stats()).sources.map((s) => ({ labels: { source: s.source }, value: pick(s) }));
  const perVariant = (pick: (v: Awaited<ReturnType<typeof stats>>['variants'][number]) => number) => async () =>
    (await stats()).variants.map((v) => ({ labels: { feature: v.feature, variant: v.variant, source: v.source }, value: pick(v) }));
  metrics.gauge(
    'nearline_push_rows_total',
    'rows pushed (and vector writes) acknowledged by this process',
    async () => [{ labels: {}, value: (await stats()).pushedRows }],
    'counter',
  );
  metrics.gauge(
    'nearline_log_fsync_batches_total',
    'fsyncs that made appends durable; concurrent pushes share one',
    perSource((s) => s.syncs),
    'counter',
  );
  metrics.gauge(
    'nearline_log_bytes',
    'bytes of each source log on disk',
    perSource((s) => s.bytes),
  );
  metrics.gauge(
    'nearline_log_end_offset',
    'offset of the last durable entry of each source log',
    perSource((s) => s.end),
  );
  metrics.gauge(
    'nearline_variant_applied_offset',
    'log offset each variant has applied in memory',
    perVariant((v) => v.applied),
  );
  metrics.gauge(
    'nearline_log_follow_errors_total',
    'failed attempts to follow a log other nodes append to (retried each second)',
    perSource((s) => s.followErrors),
    'counter',
  );
  metrics.gauge(
    'nearline_variant_lag',
    'log entries appended (by any node) that each variant has not applied here yet',
    perVariant((v) => v.lag),
  );
  metrics.gauge(
    'nearline_log_apply_embedded_texts_total',
    'texts embedded while applying the log (entries carry their embeddings: 0 unless a row predates its variant)',
    async () => [{ labels: {}, value: (await stats()).applyEmbeddedTexts }],
    'counter',
  );
  metrics.gauge(
    'nearline_variant_durable_offset',
    'log offset each variant holds durably (snapshot)',
    perVariant((v) => v.durable),
  );
  metrics.gauge(
    'nearline_snapshot_age_seconds',
    'age of the oldest applied entry not yet in a snapshot (0: none pending)',
    perVariant((v) => v.snapshotAgeSeconds),
  );
  metrics.gauge(
    'nearline_snapshot_duration_seconds',
    'duration of the last background snapshot',
    perVariant((v) => v.lastSnapshotSeconds),
  );
}
