import type { FastifyInstance } from 'fastify';
import { nlError } from '../../errors.ts';
import type { FeatureRecord } from '../../registry/registry.ts';
import type { ServerContext } from '../context.ts';
import { healthSchema } from '../schemas/dashboard.ts';

/** What the dashboard reads beyond the registry: embedding health. Scope serve, like the registry reads. */
export async function dashboardRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  const { store, auth } = ctx;
  const config = { scope: 'serve' as const };

  const embedding = (ref: string): FeatureRecord => {
    const f = store.registry.resolveFeature(ref);
    if (f.kind !== 'embedding') throw nlError('NL_UNSUPPORTED', `${ref} is a ${f.kind} feature; health is about embeddings`);
    return f;
  };

  app.get('/features/:feature/health', { schema: healthSchema, config }, async (request) => {
    const { feature } = request.params as { feature: string };
    const { against } = request.query as { against?: string };
    auth.requireFeatures(request.apiKey, against === undefined ? [feature] : [feature, against]);
    const f = embedding(feature);
    request.servedFeature = `${f.name}@${f.variant}`;
    const report = store.health.report(f);
    return against === undefined ? report : { ...report, comparison: store.health.compare(f, embedding(against)) };
  });
}
