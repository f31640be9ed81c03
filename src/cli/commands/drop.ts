import type { Command } from './index.ts';
import { withStore } from './open.ts';
import { refOf } from '../../refs.ts';

export const drop: Command = {
  summary: "remove a variant's index and online rows; its record and lineage stay, as dropped",
  usage: `usage: nearline drop FEATURE@VARIANT [--home DIR]
  Refused while an alias points at the variant or shadows traffic to it.`,
  options: {},
  async run({ home, positionals }) {
    const [ref] = positionals;
    if (!ref || positionals.length !== 1) {
      process.stderr.write(`${this.usage}\n`);
      return 2;
    }
    return withStore(home, async (store) => {
      const f = await store.drop(ref);
      process.stdout.write(`${refOf(f)} dropped: its index and online rows are removed; \`nearline show\` keeps its lineage\n`);
      return 0;
    });
  },
};
