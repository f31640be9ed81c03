import { Cluster, Redis } from 'ioredis';
import { NearlineError, nlError, providerError } from '../../errors.ts';
import type { OnlineValue } from '../../types.ts';
import type { ProviderContext } from '../index.ts';
import type { OnlineStore } from './types.ts';
import { checkFeatureKey, checkGetArgs, validatePut } from './values.ts';

export interface RedisOnlineOptions {
  /** Server URL, `redis://[user:pass@]host:port[/db]` (`rediss://` for TLS). Ignored when `cluster` is set. Default `redis://127.0.0.1:6379`. */
  url?: string;
  /** Prefix of every key this store writes, so several stores can share one server. Default `nl:`. */
  keyPrefix?: string;
  /** Redis Cluster seed nodes, `host:port` or `{host, port}`; when set, a cluster client is used instead of `url`. Default: none. */
  cluster?: Array<string | { host: string; port: number }>;
  /** Milliseconds to establish a connection before failing. Default 2000. */
  connectTimeoutMs?: number;
  /** Milliseconds a command may wait for its reply before failing, so a stalled server never hangs a request. Default 2000. */
  commandTimeoutMs?: number;
  /** Reconnection attempts a command waits through while the server is unreachable before it fails. Default 1. */
  maxRetriesPerRequest?: number;
}

/** The part of ioredis this store uses; both `Redis` and `Cluster` provide it. */
interface Batch {
  hmgetBuffer(key: string, ...fields: string[]): Batch;
  hset(key: string, ...fieldValues: Array<string | Buffer>): Batch;
  hdel(key: string, ...fields: string[]): Batch;
  exec(): Promise<Array<[error: Error | null, result: unknown]> | null>;
}

interface Client {
  readonly status: string;
  connect(): Promise<void>;
  quit(): Promise<unknown>;
  disconnect(): void;
  pipeline(): Batch;
  multi(): Batch;
  hmgetBuffer(key: string, ...fields: string[]): Promise<Array<Buffer | null>>;
  hlen(key: string): Promise<number>;
  unlink(...keys: string[]): Promise<number>;
  on(event: 'error', listener: (error: Error) => void): unknown;
}

// One HASH per feature key, field = entity id. The feature key is the hash tag, so each feature lives in one
// cluster slot: count is HLEN, deleteFeature is UNLINK, and a read of ids x features is one HMGET per feature.
// Values carry a one-byte type tag so scalars come back with their JS type; numbers are float64 so every
// finite double (and -0) round-trips; vectors are raw little-endian float32.
const NUMBER = 0x6e; // 'n'
const STRING = 0x73; // 's'
const TRUE = 0x74; // 't'
const FALSE = 0x66; // 'f'
const VECTOR = 0x76; // 'v'
const TAG_TRUE = Buffer.from([TRUE]);
const TAG_FALSE = Buffer.from([FALSE]);

/** Fields per HSET, so a large put never builds one huge command. */
const WRITE_CHUNK = 1000;

export function createRedisOnlineStore(options: RedisOnlineOptions, ctx: ProviderContext): OnlineStore {
  const prefix = options.keyPrefix ?? 'nl:';
  if (typeof prefix !== 'string') throw badOption(ctx, 'keyPrefix must be a string');
  const clustered = options.cluster !== undefined;
  const createClient = clientFactory(options, ctx);
  const keyOf = (feature: string) => `${prefix}{${feature}}`;
  let client: Client | undefined;
  let opening: Promise<Client> | undefined;
  let lastConnectionError: Error | undefined;

  function fail(e: unknown): NearlineError {
    if (e instanceof NearlineError) return e;
    // ioredis reports an unreachable server as "max retries" or "connection is closed"; the socket error says why.
    if (lastConnectionError && client?.status !== 'ready' && e instanceof Error && e !== lastConnectionError) {
      return new NearlineError('NL_PROVIDER_ERROR', [ctx.name, `${e.message} (${lastConnectionError.message})`], { cause: e });
    }
    return providerError(ctx.name, e);
  }

  function connect(): Promise<Client> {
    if (client) return Promise.resolve(client);
    opening ??= (async () => {
      const c = createClient();
      c.on('error', (e) => {
        lastConnectionError = e;
      });
      try {
        await c.connect();
      } catch (e) {
        c.disconnect();
        throw fail(lastConnectionError ?? e);
      }
      client = c;
      return c;
    })().finally(() => {
      opening = undefined;
    });
    return opening;
  }

  async function run<T>(op: (c: Client) => Promise<T>): Promise<T> {
    const c = client ?? (await connect());
    try {
      return await op(c);
    } catch (e) {
      throw fail(e);
    }
  }

  return {
    kind: 'redis',
    name: ctx.name,

    async open() {
      await connect();
    },

    async close() {
      const c = client;
      client = undefined;
      if (!c) return;
      try {
        await c.quit();
      } catch {
        c.disconnect();
      }
    },

    async put(feature, rows) {
      const { sets, deletes } = validatePut(feature, rows);
      if (sets.size === 0 && deletes.size === 0) return;
      const key = keyOf(feature);
      await run(async (c) => {
        // MULTI: readers never see half a put, and a connection lost before EXEC discards the queued writes.
        const tx = c.multi();
        if (deletes.size > 0) tx.hdel(key, ...deletes);
        let args: Array<string | Buffer> = [];
        for (const [id, value] of sets) {
          args.push(id, encode(value));
          if (args.length === 2 * WRITE_CHUNK) {
            tx.hset(key, ...args);
            args = [];
          }
        }
        if (args.length > 0) tx.hset(key, ...args);
        check(await tx.exec());
      });
    },

    async get(ids, features) {
      checkGetArgs(ids, features);
      if (ids.length === 0) return [];
      if (features.length === 0) return ids.map(() => []);
      const columns = await run(async (c): Promise<Array<Array<Buffer | null>>> => {
        // The cluster client batches same-tick commands per node (auto-pipelining), since a cluster pipeline must
        // stay within one node; standalone, every HMGET goes out in one pipeline: one round trip either way.
        if (clustered) return Promise.all(features.map((f) => c.hmgetBuffer(keyOf(f), ...ids)));
        const pipe = c.pipeline();
        for (const f of features) pipe.hmgetBuffer(keyOf(f), ...ids);
        return check(await pipe.exec()) as Array<Array<Buffer | null>>;
      });
      return decodeColumns(columns, ids.length, features.length);
    },

    async deleteFeature(feature) {
      checkFeatureKey(feature);
      await run((c) => c.unlink(keyOf(feature)));
    },

    async count(feature) {
      checkFeatureKey(feature);
      return run((c) => c.hlen(keyOf(feature)));
    },
  };
}

/** Checks options up front, so a bad definition fails at configuration time rather than at first use. */
function clientFactory(options: RedisOnlineOptions, ctx: ProviderContext): () => Client {
  const connectTimeout = positive(options.connectTimeoutMs, 2000, 'connectTimeoutMs', ctx);
  const commandTimeout = positive(options.commandTimeoutMs, 2000, 'commandTimeoutMs', ctx);
  const maxRetriesPerRequest = positive(options.maxRetriesPerRequest, 1, 'maxRetriesPerRequest', ctx, true);
  const connectionName = `nearline:${ctx.name}`;
  // Reconnect forever with a short, capped backoff: requests fail fast via maxRetriesPerRequest while the
  // server is away, and the store heals by itself when it returns.
  const retryStrategy = (times: number) => Math.min(50 * 2 ** Math.min(times, 5), 1000);
  const perNode = { connectTimeout, commandTimeout, maxRetriesPerRequest, connectionName };
  if (options.cluster !== undefined) {
    if (!Array.isArray(options.cluster) || options.cluster.length === 0) throw badOption(ctx, 'cluster must be a non-empty array of nodes');
    const nodes = options.cluster.map((node) => (typeof node === 'string' ? parseNode(node, ctx) : node));
    return () =>
      new Cluster(nodes, {
        lazyConnect: true,
        enableAutoPipelining: true,
        clusterRetryStrategy: retryStrategy,
        redisOptions: perNode,
      }) as unknown as Client;
  }
  const url = options.url ?? 'redis://127.0.0.1:6379';
  if (typeof url !== 'string' || !/^rediss?:\/\//.test(url)) throw badOption(ctx, `url must be redis://host:port, got ${String(url)}`);
  return () => new Redis(url, { ...perNode, lazyConnect: true, retryStrategy }) as unknown as Client;
}

function parseNode(node: string, ctx: ProviderContext): { host: string; port: number } {
  const m = /^(.+):(\d+)$/.exec(node);
  if (!m) throw badOption(ctx, `cluster node must be host:port, got ${node}`);
  return { host: m[1], port: Number(m[2]) };
}

function positive(value: unknown, fallback: number, name: string, ctx: ProviderContext, zeroOk = false): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < (zeroOk ? 0 : 1)) {
    throw badOption(ctx, `${name} must be a ${zeroOk ? 'non-negative' : 'positive'} integer, got ${String(value)}`);
  }
  return value;
}

function badOption(ctx: ProviderContext, message: string): NearlineError {
  return nlError('NL_BAD_DEFINITION', `provider ${ctx.name}: ${message}`);
}

/** Pipelines and transactions report per-command errors in their results instead of rejecting. */
function check(results: Array<[Error | null, unknown]> | null): unknown[] {
  if (results === null) throw new Error('transaction aborted');
  return results.map(([error, result]) => {
    if (error) throw error;
    return result;
  });
}

function encode(value: Exclude<OnlineValue, null>): Buffer {
  switch (typeof value) {
    case 'number': {
      const buf = Buffer.allocUnsafe(9);
      buf[0] = NUMBER;
      buf.writeDoubleLE(value, 1);
      return buf;
    }
    case 'string': {
      const buf = Buffer.allocUnsafe(1 + Buffer.byteLength(value));
      buf[0] = STRING;
      buf.write(value, 1, 'utf8');
      return buf;
    }
    case 'boolean':
      return value ? TAG_TRUE : TAG_FALSE;
    default: {
      const buf = Buffer.allocUnsafe(1 + value.byteLength);
      buf[0] = VECTOR;
      buf.set(new Uint8Array(value.buffer, value.byteOffset, value.byteLength), 1);
      return buf;
    }
  }
}

/**
 * Column-major replies -> row-major values. All vectors of one call share one ArrayBuffer (disjoint views):
 * one allocation per call instead of one per vector is most of the decoding cost.
 */
function decodeColumns(columns: Array<Array<Buffer | null>>, nIds: number, nFeatures: number): OnlineValue[][] {
  let vectorBytes = 0;
  for (const column of columns) {
    for (const buf of column) if (buf !== null && buf[0] === VECTOR) vectorBytes += buf.length - 1;
  }
  const arena = new Uint8Array(vectorBytes);
  let offset = 0;
  const out: OnlineValue[][] = new Array(nIds);
  for (let i = 0; i < nIds; i++) {
    const row = new Array<OnlineValue>(nFeatures);
    for (let j = 0; j < nFeatures; j++) {
      const buf = columns[j][i];
      if (buf !== null && buf[0] === VECTOR) {
        const bytes = buf.length - 1;
        if (bytes % 4 !== 0) throw nlError('NL_INTERNAL', `online vector of ${bytes} bytes is not float32`);
        arena.set(buf.subarray(1), offset);
        row[j] = new Float32Array(arena.buffer, offset, bytes >>> 2);
        offset += bytes;
      } else {
        row[j] = decodeScalar(buf);
      }
    }
    out[i] = row;
  }
  return out;
}

function decodeScalar(buf: Buffer | null): OnlineValue {
  if (buf === null) return null;
  switch (buf[0]) {
    case NUMBER:
      return buf.readDoubleLE(1);
    case STRING:
      return buf.toString('utf8', 1);
    case TRUE:
      return true;
    case FALSE:
      return false;
    default:
      throw nlError('NL_INTERNAL', `online value with unknown type tag ${buf[0]}`);
  }
}
