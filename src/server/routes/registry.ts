import type { FastifyInstance } from 'fastify';
import { nlError } from '../../errors.ts';
import type { FeatureRecord, RegistryEvent } from '../../registry/registry.ts';
import type { ServerContext } from '../context.ts';
import { registrySchemas as s, type HistoryQuery } from '../schemas/registry.ts';
import { formatRef, refOf, parseRef } from '../../refs.ts';

/** Read-only views of the registry; a feature-limited key sees only its features. */
export async function registryRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  const { registry } = ctx.store;
  const { auth } = ctx;
  const config = { scope: 'serve' as const };

  const withAliases = async (features: FeatureRecord[]) => {
    const aliases = await registry.listAliases();
    return features.map((f) => ({
      ...f,
      aliases: aliases.filter((a) => a.feature === f.name && a.variant === f.variant).map((a) => a.name),
    }));
  };

  app.get('/registry/features', { schema: s.features, config }, async (request) => ({
    features: await withAliases(await auth.visible(request.apiKey, await registry.listFeatures(), (f) => refOf(f))),
  }));

  app.get('/registry/features/:name', { schema: s.feature, config }, async (request) => {
    const { name } = request.params as { name: string };
    await auth.requireFeatures(request.apiKey, [name]);
    // `name@variant` or `name@alias` names one variant; a bare name lists them all.
    const found = name.includes('@') ? [await registry.resolveFeature(name)] : await registry.listFeatures(name);
    const visible = await auth.visible(request.apiKey, found, (f) => refOf(f));
    if (!visible.length) throw nlError('NL_FEATURE_NOT_FOUND', name);
    return { features: await withAliases(visible) };
  });

  app.get('/registry/models', { schema: s.models, config }, async () => ({ models: await registry.listModels() }));

  app.get('/registry/models/:name', { schema: s.model, config }, async (request) => {
    const { name } = request.params as { name: string };
    const ref = parseRef(name);
    const models = ref.tag === undefined ? await registry.listModels(name) : [await registry.getModel(ref.name, ref.tag)].filter((m) => m !== undefined);
    if (!models.length) throw nlError('NL_MODEL_NOT_FOUND', name);
    return { models };
  });

  app.get('/registry/aliases', { schema: s.aliases, config }, async (request) => ({
    aliases: await auth.visible(request.apiKey, await registry.listAliases(), (a) => formatRef(a.feature, a.variant)),
  }));

  app.get('/registry/history', { schema: s.history, config }, async (request) => {
    const q = request.query as HistoryQuery;
    const limit = q.limit === undefined ? 100 : Number(q.limit);
    if (limit < 1 || limit > 1000) throw nlError('NL_BAD_REQUEST', 'limit must be from 1 to 1000');
    const feature = q.feature === undefined ? undefined : parseRef(q.feature).name;
    if (feature !== undefined) {
      await auth.requireFeatures(request.apiKey, [feature]);
      if (!(await registry.listFeatures(feature)).length) throw nlError('NL_FEATURE_NOT_FOUND', feature);
    }
    const admin = !request.apiKey || request.apiKey.scope === 'admin';

    // Filtering after the query can leave a page short; page on with `before` until a page comes back empty.
    const events = await registry.listEvents({
      ...(feature !== undefined ? { feature } : {}),
      limit,
      ...(q.before !== undefined ? { before: Number(q.before) } : {}),
    });
    return {
      events: await auth.visible(
        request.apiKey,
        events.filter((e: RegistryEvent) => e.kind !== 'key' || admin),
        (e) => (e.kind === 'key' ? null : e.feature),
      ),
    };
  });

  app.get('/registry/aliases/:name', { schema: s.alias, config }, async (request) => {
    const { name } = request.params as { name: string };
    await auth.requireFeatures(request.apiKey, [name]);
    if (!(await registry.listFeatures(name)).length) throw nlError('NL_FEATURE_NOT_FOUND', name);
    return { aliases: await auth.visible(request.apiKey, await registry.listAliases(name), (a) => formatRef(a.feature, a.variant)) };
  });
}
