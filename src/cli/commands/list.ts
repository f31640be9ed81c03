import { nlError } from '../../errors.ts';
import { textColumns } from '../../materialize/text.ts';
import type { Command } from './index.ts';
import { toJson, withStore } from './open.ts';
import { formatRef, refOf } from '../../refs.ts';

export const list: Command = {
  summary: 'list models, features or aliases (default: features)',
  usage: 'usage: nearline list [models|features|aliases] [--json] [--home DIR]',
  options: { json: { type: 'boolean' } },
  async run({ home, values, positionals }) {
    const what = positionals[0] ?? 'features';
    if (!['models', 'features', 'aliases'].includes(what) || positionals.length > 1) {
      process.stderr.write(`${this.usage}\n`);
      return 2;
    }
    return withStore(home, async ({ registry }) => {
      const rows: Array<Record<string, unknown>> =
        what === 'models'
          ? (await registry.listModels()).map((m) => ({ model: refOf(m), runtime: m.runtime, dims: m.dims, pooling: m.pooling, sha256: m.sha256.slice(0, 12) }))
          : what === 'aliases'
            ? (await registry.listAliases()).map((a) => ({ alias: formatRef(a.feature, a.name), variant: a.variant, updated: a.updatedAt }))
            : (await registry.listFeatures()).map((f) => ({
                feature: refOf(f),
                kind: f.kind,
                status: f.status,
                rows: f.rows,
                provider: f.provider,
                source: refOf(f.source),
                ...(f.text ? { model: refOf(f.text.model) } : {}),
              }));
      if (values.json) process.stdout.write(toJson(rows, 2) + '\n');
      else printTable(rows);
      return 0;
    });
  },
};

export const show: Command = {
  summary: 'a feature variant with its lineage (source, model, provider) and materialization state',
  usage: 'usage: nearline show FEATURE[@VARIANT] [--home DIR]',
  options: {},
  async run({ home, positionals }) {
    const [ref] = positionals;
    if (!ref || positionals.length > 1) {
      process.stderr.write(`${this.usage}\n`);
      return 2;
    }
    return withStore(home, async (store) => {
      const { registry } = store;
      const f = await registry.resolveFeature(ref);
      const source = await registry.getSource(f.source.name, f.source.variant);
      const provider = await registry.getProvider(f.provider);
      if (!provider) throw nlError('NL_PROVIDER_NOT_FOUND', f.provider);
      const model = f.text ? await registry.getModel(f.text.model.name, f.text.model.version) : undefined;
      const out = {
        feature: refOf(f),
        ...f,
        // A materialized variant is live: it follows the rows pushed to its source until it is dropped.
        status: f.status === 'materialized' ? 'live' : f.status,
        aliases: (await registry.listAliases(f.name)).filter((a) => a.variant === f.variant).map((a) => a.name),
        lineage: {
          source: source && { ref: refOf(source), ...source },
          model: model && { ref: refOf(model), runtime: model.runtime, dims: model.dims, sha256: model.sha256 },
          ...(f.text
            ? { text: { ...(f.text.template !== undefined ? { template: f.text.template } : {}), columns: textColumns(f.text), model: refOf(f.text.model) } }
            : {}),
          provider: { name: provider.name, kind: provider.kind },
          entity: await registry.getEntity(f.entity),
        },
        materialization: (await registry.getMaterialization(f.name, f.variant)) ?? null,
        mutability: mutability(f.status),
        // Rows pushed to the source: how far this variant's durable state (snapshot) has applied its log.
        live: { source: f.source.name, logEnd: await store.live.logEnd(f.source.name), durableOffset: await registry.getLogOffset(f.name, f.variant) },
        // Mirrored traffic of the feature's aliases: the candidate variant and the overlap@k measured so far.
        shadows: await registry.listShadows(f.name),
      };
      process.stdout.write(toJson(out, 2) + '\n');
      return 0;
    });
  },
};

/** What may still change about a variant: the definition only until it publishes; the rows follow writes after. */
function mutability(status: string): string {
  if (status === 'materialized') {
    return 'definition immutable (a new model, column, metric or source means a new variant); rows follow writes (PUT /v1/features/FEATURE/vectors)';
  }
  if (status === 'materializing') return 'definition frozen while a materialization runs; rows are being written';
  return 'not published: apply may still redefine it';
}

export function printTable(rows: Array<Record<string, unknown>>): void {
  if (!rows.length) {
    process.stdout.write('(none)\n');
    return;
  }
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: unknown) => (v === undefined || v === null ? '' : String(v));
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) =>
    vals
      .map((v, i) => v.padEnd(widths[i]))
      .join('  ')
      .trimEnd() + '\n';
  process.stdout.write(line(cols));
  for (const r of rows) process.stdout.write(line(cols.map((c) => cell(r[c]))));
}
