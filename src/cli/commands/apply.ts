import { loadDefinitions } from '../../config.ts';
import type { Command } from './index.ts';
import { withStore } from './open.ts';

export const apply: Command = {
  summary: 'register / check definitions (YAML, JSON, TS/JS module) and print the plan',
  usage: 'usage: nearline apply FILE [--dry-run] [--home DIR]',
  options: { 'dry-run': { type: 'boolean' } },
  async run({ home, values, positionals }) {
    const [file] = positionals;
    if (!file || positionals.length > 1) {
      process.stderr.write(`${this.usage}\n`);
      return 2;
    }
    const defs = await loadDefinitions(file);
    return withStore(home, async (store) => {
      const { plan, applied } = await store.apply(defs, { dryRun: Boolean(values['dry-run']) });
      for (const item of plan) {
        const note = item.reason ? `  (${item.code ? item.code + ': ' : ''}${item.reason})` : '';
        process.stdout.write(`${item.action.padEnd(9)} ${item.kind.padEnd(8)} ${item.name}${note}\n`);
      }
      const counts = ['create', 'update', 'unchanged', 'refused'].map((a) => `${plan.filter((p) => p.action === a).length} ${a}`);
      const refused = plan.some((p) => p.action === 'refused');
      const changes = plan.some((p) => p.action === 'create' || p.action === 'update');
      const outcome = refused ? 'refused, nothing was written' : !applied ? 'dry run, nothing was written' : changes ? 'applied' : 'nothing to change';
      process.stdout.write(`plan: ${counts.join(', ')} — ${outcome}\n`);
      return refused ? 1 : 0;
    });
  },
};
