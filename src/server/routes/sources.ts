import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../context.ts';
import { pushSchema, type PushBody } from '../schemas/sources.ts';
import { refOf } from '../../refs.ts';

export async function sourceRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  const { store, auth, lanes } = ctx;

  app.post('/sources/:source/push', { schema: pushSchema, config: { scope: 'write' } }, async (request) => {
    const { source } = request.params as { source: string };
    const { rows } = request.body as PushBody;
    // A key limited to features may push only to a source whose every variant it may write.
    if (request.apiKey?.features)
      await auth.requireFeatures(
        request.apiKey,
        (await store.registry.featuresOfSource(source)).map((f) => refOf(f)),
      );
    return lanes.push.run(() => store.push(source, rows));
  });
}
