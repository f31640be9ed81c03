import { isNearlineError, nlError, NearlineError, type ErrorCode } from '../../errors.ts';
import { createProgress } from '../../materialize/progress.ts';
import { createJsonlSource } from '../../providers/sources/jsonl.ts';
import type { PushResult } from '../../store/live.ts';
import type { Command } from './index.ts';
import { withStore } from './open.ts';

/** Pushes a batch somewhere: this process's store, or a running server. */
type Send = (rows: Array<Record<string, unknown>>) => Promise<PushResult>;

export const push: Command = {
  summary: 'push rows (JSON Lines) to a source: every variant built from it updates',
  usage: `usage: nearline push SOURCE FILE.jsonl [--batch 500] [--url URL [--api-key KEY]] [--home DIR]
  Each line is a row with the entity key column; {"<key>": "id", "_deleted": true} deletes that entity.
  Batches are durable and applied when acknowledged; a bad row stops the push at its line, and the batches
  before it stay pushed.
  --batch N     rows per push (default 500, at most 1000)
  --url URL     push through a running server (it holds the source's log while it serves)
  --api-key KEY a key with scope write, for --url (default: env NEARLINE_API_KEY)`,
  options: { batch: { type: 'string' }, url: { type: 'string' }, 'api-key': { type: 'string' } },
  async run({ home, values, positionals }) {
    const [source, file] = positionals;
    if (!source || !file || positionals.length > 2) {
      process.stderr.write(`${this.usage}\n`);
      return 2;
    }
    const batchSize = values.batch === undefined ? 500 : Number(values.batch);
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 1000) throw nlError('NL_BAD_REQUEST', '--batch must be an integer from 1 to 1000');
    const url = values.url as string | undefined;
    if (url) return pushRows(source, file, batchSize, httpSender(url, source, (values['api-key'] as string | undefined) ?? process.env.NEARLINE_API_KEY));
    return withStore(home, (store) =>
      pushRows(source, file, batchSize, async (rows) => {
        try {
          return await store.push(source, rows);
        } catch (e) {
          if (isNearlineError(e, 'NL_LOG_LOCKED')) throw restate(e, `${e.message} (nearline push --url http://HOST:PORT)`);
          throw e;
        }
      }),
    );
  },
};

async function pushRows(source: string, file: string, batchSize: number, send: Send): Promise<number> {
  const reader = createJsonlSource({ name: source, variant: '', kind: 'jsonl', path: file });
  const progress = createProgress({ label: `push ${source}`, unit: 'rows', total: await reader.size() });
  let batch: Array<Record<string, unknown>> = [];
  let lines: number[] = [];
  let pushed = 0;
  let offset = 0;
  const started = Date.now();
  const flush = async () => {
    if (!batch.length) return;
    try {
      offset = (await send(batch)).offset;
    } catch (e) {
      if (!(e instanceof NearlineError)) throw e;
      // rows[i] of the batch is a line of the file.
      const message = e.message.replace(/rows\[(\d+)\]/, (_, i: string) => `${file} line ${lines[Number(i)]}`);
      throw restate(e, `${message}${pushed ? ` (${pushed} rows before it were pushed, up to log offset ${offset})` : ''}`);
    }
    pushed += batch.length;
    batch = [];
    lines = [];
  };
  for await (const row of reader.read()) {
    if (row.error) throw nlError('NL_BAD_SOURCE_ROW', `${file} line ${row.line}: ${row.error}${pushed ? ` (${pushed} rows before it were pushed)` : ''}`);
    batch.push(row.values);
    lines.push(row.line);
    if (batch.length >= batchSize) await flush();
    progress.update(pushed + batch.length, row.position);
  }
  await flush();
  progress.done(pushed, `pushed to ${source}`);
  process.stdout.write(`pushed ${pushed} rows to ${source} (log offset ${offset}) in ${((Date.now() - started) / 1000).toFixed(1)}s\n`);
  return 0;
}

function httpSender(base: string, source: string, apiKey: string | undefined): Send {
  const url = `${base.replace(/\/+$/, '')}/v1/sources/${encodeURIComponent(source)}/push`;
  return async (rows) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) },
      body: JSON.stringify({ rows }),
    });
    const body = (await res.json().catch(() => ({}))) as PushResult & { error?: { code: ErrorCode; message: string } };
    if (!res.ok) throw restate(new NearlineError(body.error?.code ?? 'NL_INTERNAL'), body.error?.message ?? `HTTP ${res.status} from ${url}`);
    return body;
  };
}

/** The same coded error with a message that says more (which line, what was pushed before). */
function restate(e: NearlineError, message: string): NearlineError {
  const out = new NearlineError(e.code, [], { cause: e });
  out.message = message;
  return out;
}
