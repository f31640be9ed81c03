import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import { loadDefinitions } from '../../config.ts';
import type { PlanItem } from '../../registry/registry.ts';
import type { Command } from './index.ts';
import { isPostgresUrl, registryLocation } from '../../registry/open.ts';
import { withStore } from './open.ts';

export const apply: Command = {
  summary: 'register / check definitions (YAML, JSON, TS/JS module) and print the plan',
  usage: `usage: nearline apply FILE [--dry-run] [--yes] [--force] [--home DIR]
  --dry-run  print the plan, write nothing (not even a registry file where there is none)
  --yes      apply changes to what running callers get (alias moves, a bare name becoming ambiguous) without
             asking; required for them when stdin is not a terminal
  --force    let aliases name variants that are not materialized or hold no rows`,
  options: { 'dry-run': { type: 'boolean' }, yes: { type: 'boolean' }, force: { type: 'boolean' } },
  async run({ home, values, positionals }) {
    const [file] = positionals;
    if (!file || positionals.length > 1) {
      process.stderr.write(`${this.usage}\n`);
      return 2;
    }
    const defs = await loadDefinitions(file);
    const dryRun = Boolean(values['dry-run']);
    // A dry run in a home without a registry plans against an empty one in memory and creates nothing.
    const location = registryLocation(home);
    const registryFile = dryRun && !isPostgresUrl(location) && !existsSync(location) ? ':memory:' : undefined;
    let shown = false;
    let needsYes = false;
    const show = (plan: PlanItem[]) => {
      if (shown) return;
      shown = true;
      for (const item of plan) {
        const note = item.reason ? `  (${item.code ? item.code + ': ' : ''}${item.reason})` : '';
        process.stdout.write(`${item.action.padEnd(9)} ${item.kind.padEnd(8)} ${item.name}${note}\n`);
      }
      for (const item of plan) if (item.warning) process.stderr.write(`warning: ${item.warning}\n`);
    };
    // Changes to what running callers get (alias moves, a bare name becoming ambiguous): confirmed on a terminal, or by --yes.
    const confirm = async (plan: PlanItem[]) => {
      show(plan);
      if (values.yes) return true;
      if (!process.stdin.isTTY) return !(needsYes = true);
      const rl = createInterface({ input: process.stdin, output: process.stderr });
      try {
        return /^y(es)?$/i.test((await rl.question('apply despite the warnings above? [y/N] ')).trim());
      } finally {
        rl.close();
      }
    };
    return withStore(
      home,
      async (store) => {
        const { plan, applied } = await store.apply(defs, { dryRun, force: Boolean(values.force), confirm });
        show(plan);
        const counts = ['create', 'update', 'unchanged', 'refused'].map((a) => `${plan.filter((p) => p.action === a).length} ${a}`);
        const refused = plan.some((p) => p.action === 'refused');
        const changes = plan.some((p) => p.action === 'create' || p.action === 'update');
        const outcome = refused
          ? 'refused, nothing was written'
          : dryRun
            ? 'dry run, nothing was written'
            : !applied
              ? 'not confirmed, nothing was written'
              : changes
                ? 'applied'
                : 'nothing to change';
        process.stdout.write(`plan: ${counts.join(', ')} — ${outcome}\n`);
        if (needsYes)
          process.stderr.write(
            'error NL_CONFIRMATION_REQUIRED: this apply changes what running callers get (warnings above) and stdin is not a terminal; re-run with --yes to apply it\n',
          );
        return refused || (!applied && !dryRun) ? 1 : 0;
      },
      registryFile ? { registryFile } : {},
    );
  },
};
