import path from 'node:path';
import type { Definitions, FeatureDef } from '../config.ts';
import { isNearlineError, nlError } from '../errors.ts';
import { textColumns } from '../materialize/text.ts';
import { createSource } from '../providers/index.ts';
import type { SourceSpec } from '../providers/sources/types.ts';
import type { Registry } from '../registry/registry.ts';
import { refOf } from '../refs.ts';

/**
 * Checks every column a feature references (the entity key, the vector or text columns, a scalar's column,
 * metadata) against its source's columns, so that `apply` rejects a typo instead of a materialization failing
 * on every row. Each source is read once, and only as far as its header or first rows.
 */
export async function checkColumns(features: FeatureDef[], defs: Definitions, registry: Registry): Promise<void> {
  const columnsOf = new Map<string, Promise<{ spec: SourceSpec; columns: string[] | undefined }>>();
  for (const f of features) {
    const ref = refOf(f);
    const sref = refOf(f.source);
    const spec =
      defs.sources.find((s) => s.name === f.source.name && s.variant === f.source.variant) ?? (await registry.getSource(f.source.name, f.source.variant));
    const key = (defs.entities.find((e) => e.name === f.entity) ?? (await registry.getEntity(f.entity)))?.key;
    if (!spec || key === undefined) continue; // the plan names what is undefined
    if (!columnsOf.has(sref)) columnsOf.set(sref, readColumns(spec));
    const { columns } = await columnsOf.get(sref)!;
    if (!columns) continue; // an empty source: nothing to check against yet
    const used: Array<[string, string]> = [
      [key, `the key of entity ${f.entity}`],
      ...(f.vector ? [[f.vector.column, 'vector.column'] as [string, string]] : []),
      ...(f.text ? textColumns(f.text).map((c): [string, string] => [c, f.text?.template !== undefined ? 'a text.template placeholder' : 'text']) : []),
      ...(f.kind === 'scalar' ? [[f.column, 'column'] as [string, string]] : []),
      ...f.metadata.map((c): [string, string] => [c, 'metadata']),
    ];
    const have = new Set(columns);
    for (const [column, role] of used) {
      if (have.has(column)) continue;
      const near = closest(column, columns);
      const list = columns.length > 12 ? `${columns.slice(0, 12).join(', ')}, … (${columns.length} columns)` : columns.join(', ');
      throw nlError(
        'NL_BAD_DEFINITION',
        `feature ${ref}: column "${column}" (${role}) is not in ${describe(spec)} (have: ${list})${near ? `; did you mean "${near}"?` : ''}`,
      );
    }
  }
}

async function readColumns(spec: SourceSpec): Promise<{ spec: SourceSpec; columns: string[] | undefined }> {
  try {
    return { spec, columns: await (await createSource(spec)).columns() };
  } catch (e) {
    if (isNearlineError(e, 'NL_SOURCE_NOT_FOUND')) {
      throw nlError('NL_BAD_DEFINITION', `source ${refOf(spec)}: cannot read ${describe(spec)} to check the columns features use (${e.message})`);
    }
    throw e;
  }
}

function describe(spec: SourceSpec): string {
  const file = spec.path ? path.basename(spec.path) : refOf(spec);
  return spec.table ? `table ${spec.table} of ${file}` : file;
}

/** The column a typo most likely meant: the nearest by edit distance, if near enough to be a typo. */
export function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = c.toLowerCase() === word.toLowerCase() ? 0 : editDistance(word, c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

/** Levenshtein distance with adjacent transpositions (optimal string alignment). */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}
