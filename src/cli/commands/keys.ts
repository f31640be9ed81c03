import { nlError } from '../../errors.ts';
import type { Command } from './index.ts';
import { withStore } from './open.ts';

const SCOPES = ['serve', 'write', 'admin'] as const;

export const keys: Command = {
  summary: 'create an API key (printed once, stored hashed)',
  usage: 'usage: nearline keys create --scope serve|write|admin [--features a,b] [--home DIR]',
  options: { scope: { type: 'string' }, features: { type: 'string' } },
  async run({ home, values, positionals }) {
    if (positionals[0] !== 'create' || positionals.length !== 1) {
      process.stderr.write(`${this.usage}\n`);
      return 2;
    }
    const scope = values.scope as (typeof SCOPES)[number];
    if (!SCOPES.includes(scope)) throw nlError('NL_BAD_REQUEST', `--scope must be one of ${SCOPES.join(', ')}`);
    const features = values.features === undefined ? null : (values.features as string).split(',').map((s) => s.trim()).filter(Boolean);
    return withStore(home, async ({ registry }) => {
      for (const f of features ?? []) if (!registry.listFeatures(f.split('@')[0]).length) throw nlError('NL_FEATURE_NOT_FOUND', f);
      const { key, record } = registry.createKey(scope, features);
      process.stderr.write(`created key ${record.id} (scope ${scope}${features ? `, features ${features.join(', ')}` : ''}); it is shown once:\n`);
      process.stdout.write(`${key}\n`);
      return 0;
    });
  },
};
