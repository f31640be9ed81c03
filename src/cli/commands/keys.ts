import { nlError } from '../../errors.ts';
import { findServing } from '../../server/serving.ts';
import type { Command } from './index.ts';
import { printTable } from './list.ts';
import { toJson, withStore } from './open.ts';
import { parseRef } from '../../refs.ts';

const SCOPES = ['serve', 'write', 'admin'] as const;

const USAGE = `usage: nearline keys create --scope serve|write|admin [--features a,b] [--yes] [--home DIR]
       nearline keys list [--json] [--home DIR]
       nearline keys revoke ID [--home DIR]
  A revoked key is refused by every running server within a second. Servers stay closed to callers
  without a key even when every key is revoked. The first key turns authentication on: while a server
  serves this home without keys, every client it serves gets 401 from then on, so that needs --yes.`;

export const keys: Command = {
  summary: 'create, list or revoke API keys (a key is printed once and stored hashed)',
  usage: USAGE,
  options: { scope: { type: 'string' }, features: { type: 'string' }, json: { type: 'boolean' }, yes: { type: 'boolean' } },
  async run({ home, values, positionals }) {
    const [verb, ...args] = positionals;
    const usage = () => {
      process.stderr.write(`${USAGE}\n`);
      return 2;
    };
    if (verb === 'create' && args.length === 0) {
      const scope = values.scope as (typeof SCOPES)[number];
      if (!SCOPES.includes(scope)) throw nlError('NL_BAD_REQUEST', `--scope must be one of ${SCOPES.join(', ')}`);
      const features =
        values.features === undefined
          ? null
          : (values.features as string)
              .split(',')
              .map((s) => s.trim())
              .filter(Boolean);
      return withStore(home, async ({ registry }) => {
        for (const f of features ?? []) if (!(await registry.listFeatures(parseRef(f).name)).length) throw nlError('NL_FEATURE_NOT_FOUND', f);
        const serving = (await registry.countKeys()) === 0 ? await findServing(home) : [];
        if (serving.length) {
          const where = serving.map((s) => `${s.address} (pid ${s.pid})`).join(', ');
          const what = `a server is serving this home with no API key at ${where}: the first key turns authentication on, and every client without a key gets 401 NL_UNAUTHORIZED from then on`;
          if (!values.yes) throw nlError('NL_CONFIRMATION_REQUIRED', `${what}. Nothing was created; re-run with --yes, then give the key to every client`);
          process.stderr.write(`warning: ${what}\n`);
        }
        const { key, record } = await registry.createKey(scope, features);
        process.stderr.write(`created key ${record.id} (scope ${scope}${features ? `, features ${features.join(', ')}` : ''}); it is shown once:\n`);
        process.stdout.write(`${key}\n`);
        return 0;
      });
    }
    if (verb === 'list' && args.length === 0) {
      return withStore(home, async ({ registry }) => {
        const list = await registry.listKeys();
        if (values.json) process.stdout.write(toJson(list, 2) + '\n');
        else
          printTable(
            list.map((k) => ({
              id: k.id,
              scope: k.scope,
              features: k.features?.join(',') ?? '(all)',
              created: k.createdAt,
              by: k.createdBy,
              revoked: k.revokedAt ? `${k.revokedAt} by ${k.revokedBy}` : '',
            })),
          );
        return 0;
      });
    }
    if (verb === 'revoke' && args.length === 1) {
      return withStore(home, async ({ registry }) => {
        const k = await registry.revokeKey(args[0]);
        process.stdout.write(`revoked key ${k.id} (scope ${k.scope}) at ${k.revokedAt}\n`);
        return 0;
      });
    }
    return usage();
  },
};
