import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../context.ts';
import { featuresJson } from '../json.ts';
import { embedSchema, onlineSchema, writeVectorsSchema, type EmbedBody, type OnlineBody, type WriteVectorsBody } from '../schemas/features.ts';
import { formatRef } from '../../refs.ts';

export async function featureRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  const { store, auth, lanes } = ctx;

  app.post('/online', { schema: onlineSchema, config: { scope: 'serve' } }, async (request) => {
    const body = request.body as OnlineBody;
    await auth.requireFeatures(request.apiKey, body.features);
    const { rows, variants } = await lanes.cheap.run(() => store.onlineWithVariants(body.ids, body.features));
    return { rows: rows.map((r) => ({ id: r.id, features: featuresJson(r.features) })), variants };
  });

  app.post('/embed', { schema: embedSchema, config: { scope: 'serve' } }, async (request) => {
    const body = request.body as EmbedBody;
    const res = await lanes.heavy.run(() => store.embed(body.model, body.texts));
    return { model: res.model, dims: res.dims, vectors: res.vectors.map((v) => Array.from(v)) };
  });

  app.put('/features/:feature/vectors', { schema: writeVectorsSchema, config: { scope: 'write' } }, async (request) => {
    const { feature } = request.params as { feature: string };
    await auth.requireFeatures(request.apiKey, [feature]);
    const body = request.body as WriteVectorsBody;
    const res = await lanes.push.run(() => store.writeVectors(feature, body.upserts ?? [], body.deletes ?? []));
    request.servedFeature = formatRef(res.feature, res.variant);
    return res;
  });
}
