import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../context.ts';

const status = { type: 'object', properties: { status: { type: 'string' } } } as const;

/** Liveness, readiness and metrics: open without a key, outside /v1. */
export async function opsRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  app.get('/healthz', { schema: { summary: 'the process answers', tags: ['ops'], response: { 200: status } } }, async () => ({ status: 'ok' }));

  app.get(
    '/readyz',
    {
      schema: {
        summary: 'indexes loaded and the registry readable',
        tags: ['ops'],
        response: {
          200: {
            type: 'object',
            properties: {
              status: { type: 'string' },
              failed: { type: 'array', items: { type: 'object', properties: { feature: { type: 'string' }, message: { type: 'string' } } } },
            },
          },
          503: status,
        },
      },
    },
    async (_request, reply) => {
      if (!ctx.readiness.ready) return reply.code(503).send({ status: 'loading indexes' });
      await ctx.store.registry.countKeys();
      return { status: 'ready', failed: ctx.readiness.failed };
    },
  );

  app.get('/metrics', { schema: { summary: 'Prometheus text format', tags: ['ops'], response: { 200: { type: 'string' } } } }, async (_request, reply) => {
    reply.type('text/plain; version=0.0.4; charset=utf-8');
    return ctx.metrics.render();
  });
}
