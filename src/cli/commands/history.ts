import { nlError } from '../../errors.ts';
import type { RegistryEvent } from '../../registry/registry.ts';
import type { Command } from './index.ts';
import { printTable } from './list.ts';
import { toJson, withStore } from './open.ts';
import { parseRef } from '../../refs.ts';

export const history: Command = {
  summary: 'registry changes, newest first: what changed, when and by whom',
  usage: `usage: nearline history [--feature NAME] [--limit 50] [--json] [--home DIR]
  Who is key:<id> for a change made over HTTP, user:<name> for one made by the CLI.`,
  options: { feature: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } },
  async run({ home, values, positionals }) {
    if (positionals.length) {
      process.stderr.write(`${this.usage}\n`);
      return 2;
    }
    const limit = values.limit === undefined ? 50 : Number(values.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw nlError('NL_BAD_REQUEST', '--limit must be an integer from 1 to 10000');
    const feature = values.feature as string | undefined;
    return withStore(home, async ({ registry }) => {
      if (feature !== undefined && !(await registry.listFeatures(parseRef(feature).name)).length) throw nlError('NL_FEATURE_NOT_FOUND', feature);
      const events = await registry.listEvents({ ...(feature !== undefined ? { feature: parseRef(feature).name } : {}), limit });
      if (values.json) process.stdout.write(toJson(events, 2) + '\n');
      else printTable(events.map((e) => ({ at: e.at, who: e.actor, what: `${e.action} ${e.kind}`, name: e.name, detail: describe(e) })));
      return 0;
    });
  },
};

/** One line for a change's details: an alias move as `v1 -> v2`, the rest as key=value. */
export function describe(e: RegistryEvent): string {
  const d = e.detail;
  if (!d) return '';
  if (e.action === 'alias.set') return `${d.previous ?? '(new)'} -> ${d.variant}`;
  return Object.entries(d)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(',') : String(v)}`)
    .join(' ');
}
