import type { Definitions } from '../config.ts';
import { nlError, type ErrorCode } from '../errors.ts';
import { providerRole } from '../providers/index.ts';
import { formatRef, parseRef, refOf } from '../refs.ts';
import { RegistryCore } from './core.ts';
import { osActor, type Actor, type AliasRecord, type ModelProbe, type PlanAction, type PlanItem, type Sql } from './records.ts';
import { canonical, featureSpec, modelSpec, now } from './rows.ts';

/** Applying definitions (plan, then commit) and moving aliases. */
export abstract class DefinitionsRegistry extends RegistryCore {
  // ---- apply ----

  /**
   * Compares definitions with the registry. Pure: writes nothing. A definition that would change
   * a materialized variant, a registered model, or anything in use is `refused`.
   */
  async plan(defs: Definitions, probes: Map<string, ModelProbe>, opts: { force?: boolean } = {}, q: Sql = this.sql): Promise<PlanItem[]> {
    const items: PlanItem[] = [];
    const push = (kind: PlanItem['kind'], name: string, action: PlanAction, reason?: string, code?: ErrorCode) =>
      items.push({ kind, name, action, ...(reason ? { reason } : {}), ...(code ? { code } : {}) });
    const providerKinds = new Map((await this.listProviders(q)).map((p) => [p.name, p.kind]));

    for (const p of defs.providers) {
      const old = await this.getProvider(p.name, q);
      if (!providerRole(p.kind)) throw nlError('NL_BAD_DEFINITION', `provider ${p.name}: unknown kind ${p.kind}`);
      providerKinds.set(p.name, p.kind);
      if (!old) push('provider', p.name, 'create');
      else if (old.kind === p.kind && canonical(old.options) === canonical(p.options)) push('provider', p.name, 'unchanged');
      else if (old.kind !== p.kind && (await this.dependents('provider', p.name, undefined, q)).length) {
        push('provider', p.name, 'refused', `kind ${old.kind} -> ${p.kind} while features use it; define a new provider`, 'NL_CONFLICT');
      } else push('provider', p.name, 'update');
    }
    for (const e of defs.entities) {
      const old = await this.getEntity(e.name, q);
      if (!old) push('entity', e.name, 'create');
      else if (old.key === e.key) push('entity', e.name, 'unchanged');
      else if ((await this.dependents('entity', e.name, undefined, q)).length)
        push('entity', e.name, 'refused', `key ${old.key} -> ${e.key} while features use it`, 'NL_CONFLICT');
      else push('entity', e.name, 'update');
    }
    for (const s of defs.sources) {
      const ref = refOf(s);
      const old = await this.getSource(s.name, s.variant, q);
      if (!old) push('source', ref, 'create');
      else if (canonical(old) === canonical(s)) push('source', ref, 'unchanged');
      else {
        const used = (await this.dependents('source', s.name, s.variant, q)).filter((f) => f.status === 'materialized' || f.status === 'materializing');
        if (used.length)
          push(
            'source',
            ref,
            'refused',
            `materialized by ${used.map((f) => refOf(f)).join(', ')}; a changed source is a new source variant`,
            'NL_VARIANT_IMMUTABLE',
          );
        else push('source', ref, 'update');
      }
    }
    for (const m of defs.models) {
      const ref = refOf(m);
      const old = await this.getModel(m.name, m.version, q);
      const probe = probes.get(ref);
      if (!old) push('model', ref, 'create');
      else if (canonical(modelSpec(old)) !== canonical(m))
        push('model', ref, 'refused', 'a registered model version is immutable; register a new version', 'NL_VARIANT_IMMUTABLE');
      else if (probe && probe.sha256 !== old.sha256) {
        push(
          'model',
          ref,
          'refused',
          `its files changed on disk (sha256 ${old.sha256.slice(0, 12)} -> ${probe.sha256.slice(0, 12)}); a new model means a new version`,
          'NL_MODEL_CHANGED',
        );
      } else push('model', ref, 'unchanged');
    }
    const sources = new Set([...defs.sources.map((s) => refOf(s))]);
    const entities = new Set(defs.entities.map((e) => e.name));
    const modelDims = new Map(defs.models.map((m) => [refOf(m), probes.get(refOf(m))?.dims]));
    for (const f of defs.features) {
      const ref = refOf(f);
      const where = `feature ${ref}`;
      const src = refOf(f.source);
      if (!sources.has(src) && !(await this.getSource(f.source.name, f.source.variant, q)))
        throw nlError('NL_BAD_DEFINITION', `${where}: source ${src} is not defined`);
      if (!entities.has(f.entity) && !(await this.getEntity(f.entity, q))) throw nlError('NL_BAD_DEFINITION', `${where}: entity ${f.entity} is not defined`);
      const pkind = providerKinds.get(f.provider);
      if (!pkind) throw nlError('NL_BAD_DEFINITION', `${where}: provider ${f.provider} is not defined`);
      if (f.kind === 'embedding' && providerRole(pkind) !== 'vector')
        throw nlError('NL_BAD_DEFINITION', `${where}: provider ${f.provider} (${pkind}) is not a vector provider`);
      if (f.kind === 'scalar' && providerRole(pkind) !== 'online')
        throw nlError('NL_BAD_DEFINITION', `${where}: provider ${f.provider} (${pkind}) is not an online store`);
      if (f.text) {
        const mref = refOf(f.text.model);
        const dims = modelDims.has(mref) ? modelDims.get(mref) : (await this.getModel(f.text.model.name, f.text.model.version, q))?.dims;
        if (dims === undefined && !modelDims.has(mref)) throw nlError('NL_BAD_DEFINITION', `${where}: model ${mref} is not defined`);
        if (dims !== undefined && dims !== f.dims) {
          throw nlError('NL_DIMENSION_MISMATCH', `${f.dims} dims for ${where}`, `${dims} from model ${mref}`);
        }
      }
      const old = await this.getFeature(f.name, f.variant, q);
      // `name@x` resolves to alias x first, and a provider may hold an alias `name__x` beside the collections,
      // where a collection of that name would be the aliased variant's.
      if (!old && (await this.getAlias(f.name, f.variant, q)))
        push('feature', ref, 'refused', `${ref} is an alias; name the variant differently`, 'NL_CONFLICT');
      else if (!old) push('feature', ref, 'create');
      else if (canonical(featureSpec(old)) === canonical(f)) push('feature', ref, 'unchanged');
      else if (old.status === 'materialized') push('feature', ref, 'refused', 'it is materialized; define a new variant instead', 'NL_VARIANT_IMMUTABLE');
      else if (old.status === 'materializing') {
        push(
          'feature',
          ref,
          'refused',
          `a materialization of it is running or was interrupted; let it finish (or \`materialize ${ref}\` again), or define a new variant`,
          'NL_VARIANT_IMMUTABLE',
        );
      }
      // Registered or failed: it never published anything, so its definition may still change.
      else push('feature', ref, 'update', old.status === 'failed' ? 'redefines a variant whose materialization failed' : undefined);
    }
    const features = new Set(defs.features.map((f) => refOf(f)));
    for (const a of defs.aliases) {
      const ref = formatRef(a.feature, a.name);
      if (!features.has(formatRef(a.feature, a.variant)) && !(await this.getFeature(a.feature, a.variant, q))) {
        throw nlError('NL_BAD_DEFINITION', `alias ${ref}: feature ${formatRef(a.feature, a.variant)} is not defined`);
      }
      const old = await this.getAlias(a.feature, a.name, q);
      const unsafe = old?.variant === a.variant || opts.force ? undefined : await this.aliasTargetProblem(a.feature, a.variant, q);
      if (unsafe) push('alias', ref, 'refused', `-> ${a.variant}: ${unsafe}`, 'NL_ALIAS_REFUSED');
      else if (!old) push('alias', ref, 'create');
      else if (old.variant === a.variant) push('alias', ref, 'unchanged');
      else {
        push('alias', ref, 'update', `${old.variant} -> ${a.variant}`);
        const bare = a.name === 'prod' ? ` and to bare ${a.feature}` : '';
        items[items.length - 1].warning = `alias ${ref} moves ${old.variant} -> ${a.variant}: every call to ${ref}${bare} switches variant`;
      }
    }
    await this.warnAmbiguous(defs, items, q);
    return items;
  }

  /**
   * A bare name resolves to the only variant while there is no alias prod: a second variant makes it refused
   * (NL_AMBIGUOUS_FEATURE) for the callers it serves now, so the item creating that variant carries a warning.
   */
  private async warnAmbiguous(defs: Definitions, items: PlanItem[], q: Sql): Promise<void> {
    const names = new Set(defs.features.map((f) => f.name));
    for (const name of names) {
      if ((await this.getAlias(name, 'prod', q)) || defs.aliases.some((a) => a.feature === name && a.name === 'prod')) continue;
      const existing = await this.listFeatures(name, q);
      if (existing.length !== 1 || existing[0].status !== 'materialized') continue;
      const added = items.find((p) => p.kind === 'feature' && p.action === 'create' && p.name.startsWith(`${name}@`));
      if (!added) continue;
      const only = formatRef(name, existing[0].variant);
      added.warning =
        `bare ${name} answers from ${only} now; with ${added.name} beside it and no alias prod, it is refused (NL_AMBIGUOUS_FEATURE). ` +
        `Add the alias { feature: ${name}, name: prod, variant: ${existing[0].variant} } to keep callers on ${only}, or have them name a variant`;
    }
  }

  /**
   * Writes a plan that has no refusals, in one transaction: all of it or nothing. Applies from several processes
   * are serialized: the plan is made again under the registry's lock, and an apply that committed in between and
   * changed what this plan said (an item no longer `unchanged` and no longer what was planned) refuses this one
   * with NL_CONFLICT rather than writing over it.
   */
  async commit(defs: Definitions, plan: PlanItem[], probes: Map<string, ModelProbe>, actor: Actor = osActor(), opts: { force?: boolean } = {}): Promise<void> {
    throwRefused(plan);
    await this.change(async (q) => {
      const now_ = await this.plan(defs, probes, opts, q);
      throwRefused(now_);
      const planned = new Map(plan.map((p) => [`${p.kind}:${p.name}`, p.action]));
      const moved = now_.find((p) => p.action !== 'unchanged' && planned.get(`${p.kind}:${p.name}`) !== p.action);
      if (moved) {
        throw nlError(
          'NL_CONFLICT',
          `${moved.kind} ${moved.name} changed in the registry since this plan was made (another apply?); plan again and re-run apply`,
        );
      }
      await this.write(q, defs, now_, probes, actor);
    });
  }

  private async write(q: Sql, defs: Definitions, plan: PlanItem[], probes: Map<string, ModelProbe>, actor: Actor): Promise<void> {
    const todo = new Set(plan.filter((p) => p.action === 'create' || p.action === 'update').map((p) => `${p.kind}:${p.name}`));
    const t = now();
    for (const p of defs.providers) {
      if (!todo.has(`provider:${p.name}`)) continue;
      await q.run('INSERT INTO providers VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, options = excluded.options', [
        p.name,
        p.kind,
        JSON.stringify(p.options),
        t,
      ]);
    }
    for (const e of defs.entities) {
      if (!todo.has(`entity:${e.name}`)) continue;
      await q.run('INSERT INTO entities VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET key = excluded.key', [e.name, e.key, t]);
    }
    for (const s of defs.sources) {
      if (!todo.has(`source:${refOf(s)}`)) continue;
      await q.run('INSERT INTO sources VALUES (?, ?, ?, ?, ?) ON CONFLICT(name, variant) DO UPDATE SET kind = excluded.kind, spec = excluded.spec', [
        s.name,
        s.variant,
        s.kind,
        JSON.stringify(s),
        t,
      ]);
    }
    for (const m of defs.models) {
      const ref = refOf(m);
      if (!todo.has(`model:${ref}`)) continue;
      const probe = probes.get(ref);
      if (!probe) throw nlError('NL_INTERNAL', `model ${ref} was not probed`);
      await q.run('INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?)', [m.name, m.version, m.runtime, JSON.stringify(m), probe.dims, probe.sha256, t]);
    }
    for (const f of defs.features) {
      if (!todo.has(`feature:${refOf(f)}`)) continue;
      await q.run(
        `INSERT INTO features (name, variant, kind, entity, source_name, source_variant, provider, model_name, model_version, spec, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(name, variant) DO UPDATE SET kind = excluded.kind, entity = excluded.entity,
           source_name = excluded.source_name, source_variant = excluded.source_variant, provider = excluded.provider,
           model_name = excluded.model_name, model_version = excluded.model_version, spec = excluded.spec,
           status = 'registered', rows = 0, materialized_at = NULL`,
        [
          f.name,
          f.variant,
          f.kind,
          f.entity,
          f.source.name,
          f.source.variant,
          f.provider,
          f.text?.model.name ?? null,
          f.text?.model.version ?? null,
          JSON.stringify(f),
          t,
        ],
      );
      // A redefined variant starts over: a checkpoint of its old definition must not be resumed.
      await q.run('DELETE FROM materializations WHERE feature = ? AND variant = ?', [f.name, f.variant]);
    }
    for (const p of plan) {
      if (p.action !== 'create' && p.action !== 'update') continue;
      if (p.kind === 'alias') continue; // recorded as alias.set, with the variants
      const feature = p.kind === 'feature' ? parseRef(p.name).name : null;
      await this.recordEvent(
        { actor, action: p.action, kind: p.kind, name: p.name, feature, ...(p.reason ? { detail: { reason: p.reason } } : {}) },
        undefined,
        q,
      );
    }
    for (const a of defs.aliases) {
      if (todo.has(`alias:${formatRef(a.feature, a.name)}`)) await this.setAliasInTx(q, a.feature, a.name, a.variant, actor);
    }
  }

  // ---- aliases ----

  /**
   * Atomic alias switch; the previous variant stays servable and is recorded for rollback, with who moved it
   * (`actor`, default the OS user). Refuses a variant that could not answer (see `aliasTargetProblem`) unless `force`.
   */
  async setAlias(feature: string, name: string, variant: string, opts: { force?: boolean; actor?: Actor } = {}): Promise<AliasRecord> {
    await this.change(async (q) => {
      const problem =
        opts.force || (await this.getAlias(feature, name, q))?.variant === variant ? undefined : await this.aliasTargetProblem(feature, variant, q);
      if (problem) throw nlError('NL_ALIAS_REFUSED', formatRef(feature, name), variant, `${problem}`);
      await this.setAliasInTx(q, feature, name, variant, opts.actor ?? osActor());
    });
    return (await this.getAlias(feature, name))!;
  }

  /**
   * Why an alias must not name `feature@variant` now: callers of the alias would get NL_NOT_MATERIALIZED
   * (an outage) or silently empty answers. While no variant of the feature is materialized nothing is served
   * through its aliases, so defining an alias together with the first variants is allowed.
   */
  async aliasTargetProblem(feature: string, variant: string, q: Sql = this.sql): Promise<string | undefined> {
    const variants = await this.listFeatures(feature, q);
    if (!variants.some((f) => f.status === 'materialized')) return undefined;
    const target = variants.find((f) => f.variant === variant);
    const force = 'pass --force to point the alias anyway';
    if (!target)
      return `${formatRef(feature, variant)} is not registered yet and ${feature} has materialized variants; apply it, materialize it, then move the alias (or ${force})`;
    if (target.status !== 'materialized') {
      return `${formatRef(feature, variant)} is ${target.status}, not materialized, so every call through the alias would fail; materialize it first (or ${force})`;
    }
    if (target.rows === 0) return `${formatRef(feature, variant)} holds 0 rows, so every call through the alias would return no hits (or ${force})`;
    return undefined;
  }

  private async setAliasInTx(q: Sql, feature: string, name: string, variant: string, actor: Actor): Promise<void> {
    if (!(await this.getFeature(feature, variant, q))) throw nlError('NL_FEATURE_NOT_FOUND', formatRef(feature, variant));
    if (await this.getFeature(feature, name, q)) throw nlError('NL_CONFLICT', `alias ${name} would hide variant ${formatRef(feature, name)}`);
    const previous = (await this.getAlias(feature, name, q))?.variant ?? null;
    const t = now();
    await q.run(
      'INSERT INTO aliases VALUES (?, ?, ?, ?) ON CONFLICT(feature, name) DO UPDATE SET variant = excluded.variant, updated_at = excluded.updated_at',
      [feature, name, variant, t],
    );
    await q.run('INSERT INTO alias_history (feature, name, variant, previous, at, actor) VALUES (?, ?, ?, ?, ?, ?)', [
      feature,
      name,
      variant,
      previous,
      t,
      actor,
    ]);
    await this.recordEvent({ actor, action: 'alias.set', kind: 'alias', name: formatRef(feature, name), feature, detail: { variant, previous } }, t, q);
  }

  /** Every move of alias `name` of `feature`, oldest first; `actor` is null for moves made before it was recorded. */
  async aliasHistory(feature: string, name: string): Promise<Array<{ variant: string; previous: string | null; at: string; actor: Actor | null }>> {
    return this.sql.all('SELECT variant, previous, at, actor FROM alias_history WHERE feature = ? AND name = ? ORDER BY rowid', [feature, name]);
  }
}

/** A plan with a refused item is never written: the first refusal, as the error apply gives. */
function throwRefused(plan: PlanItem[]): void {
  const first = plan.find((p) => p.action === 'refused');
  if (!first) return;
  if (first.code === 'NL_ALIAS_REFUSED' || first.code === 'NL_CONFLICT') throw nlError('NL_CONFLICT', `${first.kind} ${first.name}: ${first.reason}`);
  throw nlError(first.code === 'NL_MODEL_CHANGED' ? 'NL_MODEL_CHANGED' : 'NL_VARIANT_IMMUTABLE', first.name, first.reason ?? 'refused');
}
