// `nearline/client`: a typed HTTP client for nearline's /v1 API, for Node 20+ and browsers, with no runtime
// dependencies. Request and response types are the server's route schemas (TypeBox), imported as types only.
import type { ErrorCode } from '../errors.ts';
import type { HealthQuery, HealthResponse, MapQuery, MapResponse, SeriesResponse } from '../server/schemas/dashboard.ts';
import type { EmbedBody, EmbedResponse, OnlineBody, OnlineResponse, WriteVectorsBody, WriteVectorsResponse } from '../server/schemas/features.ts';
import type { NearestBatchBody, NearestBatchResponse, NearestBody, NearestResponse } from '../server/schemas/nearest.ts';
import type { AliasMoveBody, AliasMoveResponse, CompareBody, CompareResponse } from '../server/schemas/lifecycle.ts';
import type { PushBody, PushResponse } from '../server/schemas/sources.ts';
import type { AliasesResponse, FeaturesResponse, HistoryQuery, HistoryResponse, ModelsResponse } from '../server/schemas/registry.ts';

export type { HealthQuery, HealthResponse, MapQuery, MapResponse, SeriesResponse } from '../server/schemas/dashboard.ts';
export type { EmbedBody, EmbedResponse, OnlineBody, OnlineResponse, WriteVectorsBody, WriteVectorsResponse } from '../server/schemas/features.ts';
export type { Hit, NearestBatchBody, NearestBatchResponse, NearestBody, NearestResponse, Query } from '../server/schemas/nearest.ts';
export type { AliasMoveBody, AliasMoveResponse, CompareBody, CompareReport, CompareResponse } from '../server/schemas/lifecycle.ts';
export type { PushBody, PushResponse } from '../server/schemas/sources.ts';
export type {
  AliasInfo,
  AliasesResponse,
  FeatureInfo,
  FeaturesResponse,
  HistoryQuery,
  HistoryResponse,
  ModelInfo,
  ModelsResponse,
  RegistryEvent,
} from '../server/schemas/registry.ts';
export type { Filter, FilterOp, Scalar } from '../types.ts';

export interface NearlineOptions {
  /** Base URL of a nearline server, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** API key, sent as `Authorization: Bearer KEY`. Default: none. */
  apiKey?: string;
  /** Time allowed for each attempt, ms. Default 10000. */
  timeoutMs?: number;
  /** Retries after 503 NL_OVERLOADED, and after connection failures of idempotent calls. Default 3. */
  retries?: number;
  /** First retry delay, ms, doubled on each retry with jitter. Default 100. */
  backoffMs?: number;
  /** Longest wait before a retry, ms, also capping the server's Retry-After. Default 2000. */
  maxBackoffMs?: number;
  /** The fetch implementation. Default `globalThis.fetch` (Node's keeps connections alive). */
  fetch?: typeof fetch;
}

/** Per-call options. */
export interface CallOptions {
  /** Aborts the call (all its attempts). */
  signal?: AbortSignal;
  /** Overrides the client's `timeoutMs` for this call. */
  timeoutMs?: number;
}

/** Codes the client raises itself: the request timed out, the server could not be reached, or it answered something that is not nearline's JSON. */
export type ClientErrorCode = 'NL_TIMEOUT' | 'NL_UNREACHABLE' | 'NL_BAD_RESPONSE';

/** An error from the API (`code` is the server's NL_* code, `status` its HTTP status) or from the client (status 0). */
export class NearlineClientError extends Error {
  readonly code: ErrorCode | ClientErrorCode | (string & {});
  readonly status: number;

  constructor(code: string, message: string, status: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NearlineClientError';
    this.code = code;
    this.status = status;
  }
}

type Method = 'GET' | 'POST' | 'PUT';

interface Call {
  method: Method;
  path: string;
  body?: unknown;
  /** Safe to send again after a connection failure (it may have reached the server). */
  idempotent: boolean;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/** Typed arrays (Float32Array vectors) go out as JSON arrays. */
const json = (body: unknown) => JSON.stringify(body, (_k, v) => (ArrayBuffer.isView(v) && !(v instanceof DataView) ? Array.from(v as Float32Array) : v));

const seg = (s: string) => encodeURIComponent(s);

/**
 * A nearline server. Every method is one /v1 route; errors are thrown as {@link NearlineClientError}.
 *
 * ```ts
 * const nl = new Nearline({ url: 'http://127.0.0.1:8080', apiKey: process.env.NEARLINE_KEY });
 * const { hits } = await nl.nearest({ feature: 'item_vec', k: 10, query: { id: 'item-42' } });
 * ```
 */
export class Nearline {
  /** Each method's route, as the OpenAPI document names it. */
  static readonly routes = {
    nearest: 'POST /v1/nearest',
    nearestBatch: 'POST /v1/nearest/batch',
    online: 'POST /v1/online',
    embed: 'POST /v1/embed',
    writeVectors: 'PUT /v1/features/{feature}/vectors',
    push: 'POST /v1/sources/{source}/push',
    features: 'GET /v1/registry/features',
    feature: 'GET /v1/registry/features/{name}',
    models: 'GET /v1/registry/models',
    model: 'GET /v1/registry/models/{name}',
    aliases: 'GET /v1/registry/aliases',
    alias: 'GET /v1/registry/aliases/{name}',
    history: 'GET /v1/registry/history',
    health: 'GET /v1/features/{feature}/health',
    map: 'GET /v1/features/{feature}/map',
    series: 'GET /v1/dashboard/series',
    compare: 'POST /v1/compare',
    setAlias: 'PUT /v1/registry/aliases/{feature}/{alias}',
    rollbackAlias: 'POST /v1/registry/aliases/{feature}/{alias}/rollback',
  } as const;

  readonly url: string;
  private readonly apiKey?: string;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly fetchImpl: typeof fetch;

  constructor(opts: NearlineOptions) {
    if (!opts?.url) throw new TypeError('Nearline: `url` is required');
    this.url = opts.url.replace(/\/+$/, '');
    this.apiKey = opts.apiKey;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.retries = opts.retries ?? 3;
    this.backoffMs = opts.backoffMs ?? 100;
    this.maxBackoffMs = opts.maxBackoffMs ?? 2000;
    this.fetchImpl = opts.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** Nearest neighbours of one query (`POST /v1/nearest`). */
  nearest(req: NearestBody, opts?: CallOptions): Promise<NearestResponse> {
    return this.call({ method: 'POST', path: '/v1/nearest', body: req, idempotent: true }, opts);
  }

  /** Nearest neighbours of many queries against one feature (`POST /v1/nearest/batch`). */
  nearestBatch(req: NearestBatchBody, opts?: CallOptions): Promise<NearestBatchResponse> {
    return this.call({ method: 'POST', path: '/v1/nearest/batch', body: req, idempotent: true }, opts);
  }

  /** Feature values of many ids (`POST /v1/online`). */
  online(req: OnlineBody, opts?: CallOptions): Promise<OnlineResponse> {
    return this.call({ method: 'POST', path: '/v1/online', body: req, idempotent: true }, opts);
  }

  /** Embeds texts with a registered model (`POST /v1/embed`). */
  embed(req: EmbedBody, opts?: CallOptions): Promise<EmbedResponse> {
    return this.call({ method: 'POST', path: '/v1/embed', body: req, idempotent: true }, opts);
  }

  /** Upserts and deletes vectors of an embedding feature (`PUT /v1/features/{feature}/vectors`, scope write). */
  writeVectors(feature: string, req: WriteVectorsBody, opts?: CallOptions): Promise<WriteVectorsResponse> {
    // Upserts by id and deletes: sending the same request twice leaves the same state.
    return this.call({ method: 'PUT', path: `/v1/features/${seg(feature)}/vectors`, body: req, idempotent: true }, opts);
  }

  /** Pushes rows to a source by name (`POST /v1/sources/{source}/push`, scope write); resolves once they are durable. */
  push(source: string, req: PushBody, opts?: CallOptions): Promise<PushResponse> {
    // A push that may have reached the server is not resent: the caller decides, knowing its rows.
    return this.call({ method: 'POST', path: `/v1/sources/${seg(source)}/push`, body: req, idempotent: false }, opts);
  }

  /** A variant's embedding health: baseline, recent writes, drift; with `against`, compared with another variant (`GET /v1/features/{feature}/health`). */
  health(feature: string, query: HealthQuery = {}, opts?: CallOptions): Promise<HealthResponse> {
    return this.call(
      { method: 'GET', path: `/v1/features/${seg(feature)}/health${query.against === undefined ? '' : `?against=${seg(query.against)}`}`, idempotent: true },
      opts,
    );
  }

  /** A 2-D PCA map of a sample of a variant's vectors with their metadata (`GET /v1/features/{feature}/map`). */
  map(feature: string, query: MapQuery = {}, opts?: CallOptions): Promise<MapResponse> {
    return this.call(
      { method: 'GET', path: `/v1/features/${seg(feature)}/map${query.refresh === undefined ? '' : `?refresh=${query.refresh}`}`, idempotent: true },
      opts,
    );
  }

  /** The dashboard's charts: the last half hour of serving, push and process numbers (`GET /v1/dashboard/series`). */
  series(opts?: CallOptions): Promise<SeriesResponse> {
    return this.call({ method: 'GET', path: '/v1/dashboard/series', idempotent: true }, opts);
  }

  /** Compares two variants of a feature (`POST /v1/compare`, scope admin); with `gate`, the answer says whether it passed. */
  compare(req: CompareBody, opts?: CallOptions): Promise<CompareResponse> {
    return this.call({ method: 'POST', path: '/v1/compare', body: req, idempotent: true }, opts);
  }

  /** Points an alias at a variant, behind an optional gate (`PUT /v1/registry/aliases/{feature}/{alias}`, scope admin). */
  setAlias(feature: string, alias: string, req: AliasMoveBody, opts?: CallOptions): Promise<AliasMoveResponse> {
    return this.call({ method: 'PUT', path: `/v1/registry/aliases/${seg(feature)}/${seg(alias)}`, body: req, idempotent: true }, opts);
  }

  /** Moves an alias back to its previous variant (`POST /v1/registry/aliases/{feature}/{alias}/rollback`, scope admin). */
  rollbackAlias(feature: string, alias: string, opts?: CallOptions): Promise<AliasMoveResponse> {
    // Not resent: a second rollback would move the alias again.
    return this.call({ method: 'POST', path: `/v1/registry/aliases/${seg(feature)}/${seg(alias)}/rollback`, idempotent: false }, opts);
  }

  /** Registry views (`GET /v1/registry/...`): every variant, model version or alias, or those of one name. */
  readonly registry = {
    features: (name?: string, opts?: CallOptions): Promise<FeaturesResponse> =>
      this.call({ method: 'GET', path: name === undefined ? '/v1/registry/features' : `/v1/registry/features/${seg(name)}`, idempotent: true }, opts),
    models: (name?: string, opts?: CallOptions): Promise<ModelsResponse> =>
      this.call({ method: 'GET', path: name === undefined ? '/v1/registry/models' : `/v1/registry/models/${seg(name)}`, idempotent: true }, opts),
    aliases: (name?: string, opts?: CallOptions): Promise<AliasesResponse> =>
      this.call({ method: 'GET', path: name === undefined ? '/v1/registry/aliases' : `/v1/registry/aliases/${seg(name)}`, idempotent: true }, opts),
    /** Registry changes, newest first; page on with `before` set to the last event's id. */
    history: (query: HistoryQuery = {}, opts?: CallOptions): Promise<HistoryResponse> => {
      const qs = new URLSearchParams(Object.entries(query).filter((e): e is [string, string] => e[1] !== undefined)).toString();
      return this.call({ method: 'GET', path: `/v1/registry/history${qs ? `?${qs}` : ''}`, idempotent: true }, opts);
    },
  };

  private async call<T>(c: Call, opts: CallOptions = {}): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (c.body !== undefined) headers['content-type'] = 'application/json';
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    const body = c.body === undefined ? undefined : json(c.body);
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      const timeout = AbortSignal.timeout(timeoutMs);
      const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
      let res: Response;
      try {
        res = await this.fetchImpl(this.url + c.path, { method: c.method, headers, body, signal });
      } catch (e) {
        if (opts.signal?.aborted) throw opts.signal.reason;
        const timedOut = timeout.aborted;
        // A timed-out or dropped request may have been served; only idempotent calls are sent again.
        if (c.idempotent && attempt < this.retries) {
          await sleep(this.delay(attempt), opts.signal);
          continue;
        }
        throw timedOut
          ? new NearlineClientError('NL_TIMEOUT', `${c.method} ${c.path} timed out after ${timeoutMs} ms`, 0, { cause: e })
          : new NearlineClientError('NL_UNREACHABLE', `${c.method} ${c.path}: ${(e as Error).message}`, 0, { cause: e });
      }
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch (e) {
        throw new NearlineClientError('NL_BAD_RESPONSE', `${c.method} ${c.path}: HTTP ${res.status}, not JSON: ${text.slice(0, 200)}`, res.status, {
          cause: e,
        });
      }
      if (res.ok) return parsed as T;
      const err = (parsed as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
      if (!err || typeof err.code !== 'string') {
        throw new NearlineClientError('NL_BAD_RESPONSE', `${c.method} ${c.path}: HTTP ${res.status} without an error body`, res.status);
      }
      // NL_OVERLOADED is refused before any work, so even a push is safe to send again.
      if (err.code === 'NL_OVERLOADED' && attempt < this.retries) {
        const after = Number(res.headers.get('retry-after'));
        await sleep(Number.isFinite(after) && after > 0 ? Math.min(after * 1000, this.maxBackoffMs) : this.delay(attempt), opts.signal);
        continue;
      }
      throw new NearlineClientError(err.code, String(err.message ?? err.code), res.status);
    }
  }

  /** Exponential backoff with jitter: half the nominal delay plus a random half. */
  private delay(attempt: number): number {
    const nominal = Math.min(this.backoffMs * 2 ** attempt, this.maxBackoffMs);
    return nominal / 2 + Math.random() * (nominal / 2);
  }
}
