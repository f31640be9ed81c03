import type { FastifyInstance } from 'fastify';
import { keyActor } from '../../registry/registry.ts';
import { failedGates, parseGate } from '../../store/lifecycle.ts';
import type { ServerContext } from '../context.ts';
import { aliasMoveSchema, aliasRollbackSchema, compareSchema, type AliasMoveBody, type AliasParams, type CompareBody } from '../schemas/lifecycle.ts';

/** Model changes over HTTP: compare two variants, move an alias behind a gate, roll it back. Scope admin. */
export async function lifecycleRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  const { store, lanes } = ctx;
  const config = { scope: 'admin' as const };

  app.post('/compare', { schema: compareSchema, config }, async (request) => {
    const body = request.body as CompareBody;
    const gates = body.gate === undefined ? [] : parseGate(body.gate);
    const report = await lanes.heavy.run(() => store.compare(body.a, body.b, { k: body.k, sample: body.sample, queries: body.queries }));
    if (!gates.length) return report;
    const failed = failedGates(report, gates);
    return { ...report, gate: { passed: failed.length === 0, failed } };
  });

  app.put('/registry/aliases/:feature/:alias', { schema: aliasMoveSchema, config }, async (request) => {
    const { feature, alias } = request.params as AliasParams;
    const body = request.body as AliasMoveBody;
    const r = await lanes.heavy.run(() =>
      store.setAlias(feature, alias, body.variant, {
        force: body.force,
        gate: body.gate,
        sample: body.sample,
        queries: body.queries,
        k: body.k,
        actor: keyActor(request.apiKey),
      }),
    );
    return { feature, alias, variant: r.alias.variant, previous: r.previous ?? null, ...(r.report ? { report: r.report } : {}) };
  });

  app.post('/registry/aliases/:feature/:alias/rollback', { schema: aliasRollbackSchema, config }, async (request) => {
    const { feature, alias } = request.params as AliasParams;
    const r = await store.rollbackAlias(feature, alias, { actor: keyActor(request.apiKey) });
    return { feature, alias, variant: r.alias.variant, previous: r.previous };
  });
}
