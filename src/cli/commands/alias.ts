import { nlError } from '../../errors.ts';
import { compareInputs, formatReport } from './compare.ts';
import type { Command } from './index.ts';
import { withStore } from './open.ts';
import { formatRef } from '../../refs.ts';

export const alias: Command = {
  summary: 'point an alias at a variant (optionally gated), roll it back, or shadow traffic to a candidate',
  usage: `usage: nearline alias set FEATURE NAME VARIANT [--force] [--gate EXPR [--sample N | --queries FILE] [--k 10]] [--home DIR]
       nearline alias rollback FEATURE NAME [--home DIR]
       nearline alias shadow FEATURE NAME VARIANT --fraction F [--home DIR]
  set       atomic switch; refuses a variant that is not materialized or holds no rows (every call through the
            alias would fail or find nothing), unless --force. With --gate (e.g. overlap>=0.6,recall>=0.95) it
            first compares the variant the alias names now with VARIANT, as \`nearline compare\` does, and
            refuses (exit 1, alias unchanged) when a condition fails.
  rollback  moves the alias back to the variant it named before its last move.
  shadow    mirrors the share F of the alias's /v1/nearest traffic to VARIANT after answering, and records the
            live overlap@k (in \`show\` and /metrics); --fraction 0 stops it.`,
  options: {
    force: { type: 'boolean' },
    gate: { type: 'string' },
    sample: { type: 'string' },
    queries: { type: 'string' },
    k: { type: 'string' },
    fraction: { type: 'string' },
  },
  async run({ home, values, positionals }) {
    const [verb, feature, name, variant] = positionals;
    const usage = () => {
      process.stderr.write(`${this.usage}\n`);
      return 2;
    };
    if (verb === 'rollback') {
      if (!feature || !name || positionals.length !== 3) return usage();
      return withStore(home, async (store) => {
        const r = await store.rollbackAlias(feature, name);
        process.stdout.write(`${formatRef(feature, name)} -> ${r.alias.variant} (rolled back from ${r.previous})\n`);
        return 0;
      });
    }
    if (verb === 'shadow') {
      if (!feature || !name || !variant || positionals.length !== 4 || values.fraction === undefined) return usage();
      const fraction = Number(values.fraction);
      if (!Number.isFinite(fraction)) throw nlError('NL_BAD_REQUEST', '--fraction must be a number from 0 to 1');
      return withStore(home, async (store) => {
        await store.shadowAlias(feature, name, variant, fraction);
        process.stdout.write(
          fraction === 0
            ? `${formatRef(feature, name)}: shadow traffic stopped\n`
            : `${formatRef(feature, name)}: ${fraction * 100}% of its nearest queries mirrored to ${variant}\n`,
        );
        return 0;
      });
    }
    if (verb !== 'set' || !feature || !name || !variant || positionals.length !== 4) return usage();
    const inputs = values.gate === undefined ? {} : compareInputs(values);
    return withStore(home, async (store) => {
      const { previous, report } = await store.setAlias(feature, name, variant, {
        force: Boolean(values.force),
        ...(values.gate !== undefined ? { gate: values.gate as string, ...inputs } : {}),
      });
      if (report) process.stdout.write(`${formatReport(report)}\n`);
      process.stdout.write(`${formatRef(feature, name)} -> ${variant}${previous && previous !== variant ? ` (was ${previous})` : ''}\n`);
      return 0;
    });
  },
};
