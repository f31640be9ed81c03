import type { Redis } from 'ioredis';
import { nlError, NearlineError } from '../errors.ts';
import type { Log, LogEntry, LogStats } from './types.ts';

/*
 * A source's log in Redis Streams, shared by every node that opens it:
 *
 *   nearline:log:{<source>}        the stream; entry ids are 0-<offset>, fields k (key) and d (JSON data)
 *   nearline:log:{<source>}:seq    the last offset handed out
 *
 * An append is one Lua script that takes the next offsets from the counter and adds the entries under them,
 * so every node agrees on the offsets and any node may append. An append is acknowledged once Redis has
 * answered it: it is as durable as Redis makes it, which is fsynced only with `appendonly yes` and
 * `appendfsync always` (opening warns otherwise). Compaction deletes the entries superseded by a later entry
 * of the same key at or below `upTo`; offsets never change. Followers wait for new entries with XREAD BLOCK
 * on a connection of their own.
 */

export interface RedisLogOptions {
  /** Entries one XRANGE page reads. Default 1000. */
  page?: number;
  /** A compaction runs only once this many entries were appended since the last one (and at least half the stream). Default 1000. */
  compactEvery?: number;
}

const APPEND = `
local n = #ARGV / 2
local last = redis.call('INCRBY', KEYS[2], n)
local first = last - n + 1
for i = 1, n do
  redis.call('XADD', KEYS[1], '0-' .. (first + i - 1), 'k', ARGV[2 * i - 1], 'd', ARGV[2 * i])
end
return first`;

const streamKey = (name: string) => `nearline:log:{${name}}`;

/** Offset of a stream id `0-<offset>`. */
const offsetOf = (id: string) => Number(id.slice(id.indexOf('-') + 1));

type RedisClient = Redis & { nearlineAppend(stream: string, seq: string, ...args: string[]): Promise<number> };

/** Connects to `url`, or fails with NL_LOG_UNAVAILABLE naming the source and why. */
async function connect(url: string, name: string): Promise<RedisClient> {
  const { Redis } = await import('ioredis').catch(() => {
    throw nlError('NL_LOG_UNAVAILABLE', name, 'NEARLINE_LOG names Redis, but the optional dependency ioredis is not installed (npm install ioredis)');
  });
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 3, enableOfflineQueue: true }) as RedisClient;
  client.on('error', () => undefined);
  client.defineCommand('nearlineAppend', { numberOfKeys: 2, lua: APPEND });
  try {
    await client.connect();
  } catch (e) {
    client.disconnect();
    throw nlError('NL_LOG_UNAVAILABLE', name, `cannot reach ${redacted(url)}: ${(e as Error).message}`);
  }
  return client;
}

/** The URL without its password, for messages. */
function redacted(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'the Redis URL';
  }
}

/** Why acknowledged appends may not be fsynced on this server, or undefined when they are (or it cannot tell). */
async function fsyncWarning(client: Redis): Promise<string | undefined> {
  try {
    const [, aof] = (await client.config('GET', 'appendonly')) as string[];
    const [, fsync] = (await client.config('GET', 'appendfsync')) as string[];
    if (aof === 'yes' && fsync === 'always') return undefined;
    return `appendonly ${aof}, appendfsync ${fsync}: acknowledged pushes are not fsynced; set appendonly yes and appendfsync always`;
  } catch {
    // CONFIG may be disabled (managed Redis): the operator has to vouch for it.
    return undefined;
  }
}

const warned = new Set<string>();

export async function openRedisLog(url: string, name: string, opts: RedisLogOptions = {}): Promise<Log & { wait(after: number, ms: number): Promise<number> }> {
  const page = opts.page ?? 1000;
  const compactEvery = opts.compactEvery ?? 1000;
  const key = streamKey(name);
  const seq = `${key}:seq`;
  const client = await connect(url, name);
  let blocking: Redis | undefined;
  const warning = await fsyncWarning(client);
  if (warning && !warned.has(url)) {
    warned.add(url);
    process.emitWarning(`nearline log in ${redacted(url)}: ${warning}`, { code: 'NL_LOG_NOT_FSYNCED' });
  }
  const failed = (e: unknown) => (e instanceof NearlineError ? e : nlError('NL_LOG_UNAVAILABLE', name, (e as Error).message));

  let endOffset = Number((await client.get(seq)) ?? 0);
  let closed = false;
  let compactedThrough = 0;
  let compacting = false;
  const stats = { appended: 0, syncs: 0, compactions: 0, entries: 0 };
  const seen = (end: number) => (endOffset = Math.max(endOffset, end));

  async function refreshEnd(): Promise<number> {
    try {
      return seen(Number((await client.get(seq)) ?? 0));
    } catch (e) {
      throw failed(e);
    }
  }

  async function* read(after: number): AsyncGenerator<LogEntry> {
    const limit = await refreshEnd();
    let cursor = after;
    while (cursor < limit) {
      let rows: Array<[string, string[]]>;
      try {
        rows = (await client.xrange(key, `0-${cursor + 1}`, `0-${limit}`, 'COUNT', page)) as Array<[string, string[]]>;
      } catch (e) {
        throw failed(e);
      }
      if (!rows.length) return;
      for (const [id, fields] of rows) {
        const offset = offsetOf(id);
        cursor = offset;
        const k = fields[fields.indexOf('k') + 1];
        const d = fields[fields.indexOf('d') + 1];
        yield { offset, key: k, data: JSON.parse(d) };
      }
    }
  }

  async function compact(upTo: number): Promise<{ before: number; after: number } | null> {
    // Each compaction reads the stream up to `upTo`: run one only when enough was appended since the last.
    if (compacting || upTo - compactedThrough < compactEvery) return null;
    compacting = true;
    try {
      const before = await client.xlen(key);
      if (upTo - compactedThrough < before / 2) return null;
      const latest = new Map<string, string>();
      const superseded: string[] = [];
      let cursor = 0;
      for (;;) {
        const rows = (await client.xrange(key, `0-${cursor + 1}`, `0-${upTo}`, 'COUNT', page)) as Array<[string, string[]]>;
        if (!rows.length) break;
        for (const [id, fields] of rows) {
          const k = fields[fields.indexOf('k') + 1];
          const older = latest.get(k);
          if (older) superseded.push(older);
          latest.set(k, id);
          cursor = offsetOf(id);
        }
      }
      for (let at = 0; at < superseded.length; at += page) await client.xdel(key, ...superseded.slice(at, at + page));
      compactedThrough = upTo;
      stats.compactions++;
      const after = before - superseded.length;
      stats.entries = after;
      return { before, after };
    } catch (e) {
      throw failed(e);
    } finally {
      compacting = false;
    }
  }

  return {
    name,
    writable: true,
    shared: true,
    async append(entries) {
      if (closed) throw nlError('NL_OVERLOADED', `log ${name} is closed`);
      if (!entries.length) return endOffset + 1;
      const args: string[] = [];
      for (const e of entries) args.push(e.key, JSON.stringify(e.data));
      let first: number;
      try {
        first = Number(await client.nearlineAppend(key, seq, ...args));
      } catch (e) {
        throw failed(e);
      }
      seen(first + entries.length - 1);
      stats.appended += entries.length;
      stats.syncs++;
      return first;
    },
    read,
    end: () => endOffset,
    compact,
    stats: (): LogStats => ({ end: endOffset, bytes: 0, segments: 1, appended: stats.appended, syncs: stats.syncs, compactions: stats.compactions }),
    /** Resolves with the log's end once it passes `after`, or after `ms` with the end as it is; `ms` 0 reads the end now. */
    async wait(after, ms) {
      if (closed) return endOffset;
      if (endOffset > after || ms <= 0) return refreshEnd();
      blocking ??= client.duplicate();
      try {
        await blocking.xread('COUNT', 1, 'BLOCK', ms, 'STREAMS', key, `0-${after}`);
      } catch (e) {
        if (closed) return endOffset;
        throw failed(e);
      }
      return refreshEnd();
    },
    async close() {
      if (closed) return;
      closed = true;
      blocking?.disconnect();
      await client.quit().catch(() => client.disconnect());
    },
  };
}
