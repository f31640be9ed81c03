import type { Command } from './index.ts';
import { withStore } from './open.ts';

export const alias: Command = {
  summary: 'atomically point an alias (e.g. prod) at a variant; the old variant stays servable',
  usage: `usage: nearline alias set FEATURE NAME VARIANT [--force] [--home DIR]
  Refuses a variant that is not materialized or holds no rows (every call through the alias would fail or
  find nothing), unless --force.`,
  options: { force: { type: 'boolean' } },
  async run({ home, values, positionals }) {
    const [verb, feature, name, variant] = positionals;
    if (verb !== 'set' || !feature || !name || !variant || positionals.length !== 4) {
      process.stderr.write(`${this.usage}\n`);
      return 2;
    }
    return withStore(home, async (store) => {
      const { previous } = await store.setAlias(feature, name, variant, { force: Boolean(values.force) });
      process.stdout.write(`${feature}@${name} -> ${variant}${previous && previous !== variant ? ` (was ${previous})` : ''}\n`);
      return 0;
    });
  },
};
