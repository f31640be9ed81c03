import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../context.ts';

const status = { type: 'object', properties: { status: { type: 'string' } } } as const;

/** How far each followed variant is behind its source's log: entries any node appended, not applied here yet. */
const lag = {
  type: 'array',
  items: {
    type: 'object',
    properties: {
      feature: { type: 'string' },
      variant: { type: 'string' },
      source: { type: 'string' },
      applied: { type: 'integer' },
      end: { type: 'integer' },
      lag: { type: 'integer' },
    },
  },
} as const;

/** Liveness, readiness and metrics: open without a key, outside /v1. */
export async function opsRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  app.get('/healthz', { schema: { summary: 'the process answers', tags: ['ops'], response: { 200: status } } }, async () => ({ status: 'ok' }));

  app.get(
    '/readyz',
    {
      schema: {
        summary: 'indexes loaded, caught up with their logs since start, and the registry readable; the lag of each followed variant',
        tags: ['ops'],
        response: {
          200: {
            type: 'object',
            properties: {
              status: { type: 'string' },
              failed: { type: 'array', items: { type: 'object', properties: { feature: { type: 'string' }, message: { type: 'string' } } } },
              lag,
            },
          },
          503: { type: 'object', properties: { status: { type: 'string' }, lag } },
        },
      },
    },
    async (_request, reply) => {
      if (!ctx.readiness.ready) return reply.code(503).send({ status: 'loading indexes' });
      const behind = await ctx.store.live.lag();
      // Not ready until every followed variant has caught up once since start; a lag under load afterwards is reported, not fatal.
      if (!ctx.readiness.caughtUp) {
        if (behind.some((l) => l.lag > 0)) return reply.code(503).send({ status: 'catching up with the log', lag: behind });
        ctx.readiness.caughtUp = true;
      }
      await ctx.store.registry.countKeys();
      return { status: 'ready', failed: ctx.readiness.failed, lag: behind };
    },
  );

  app.get('/metrics', { schema: { summary: 'Prometheus text format', tags: ['ops'], response: { 200: { type: 'string' } } } }, async (_request, reply) => {
    reply.type('text/plain; version=0.0.4; charset=utf-8');
    return ctx.metrics.render();
  });
}
