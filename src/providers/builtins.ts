import { createRequire } from 'node:module';
import { defineOnlineStore, defineRuntime, defineSource, defineVectorProvider, type Plugin } from '../plugins.ts';
import { peer } from './peer.ts';

/*
 * nearline's own backends, declared through the same door as outside ones. Each `create` imports its
 * implementation on first use, so a user of hnsw + sqlite never loads ioredis, the Qdrant client or a model
 * runtime; heavy ones are optional peer dependencies (peer.ts). The definitions themselves are built on first
 * use too: their option schemas need TypeBox, which takes longer to load than the rest of the library.
 */

let built: readonly Plugin[] | undefined;

/** The built-in plugins, made on first call. */
export function builtinPlugins(): readonly Plugin[] {
  return (built ??= make());
}

function make(): readonly Plugin[] {
  const { Type } = createRequire(import.meta.url)('@sinclair/typebox/type') as typeof import('@sinclair/typebox/type');

  const int = (minimum: number, description: string) => Type.Optional(Type.Integer({ minimum, description }));
  const str = (description: string) => Type.Optional(Type.String({ minLength: 1, description }));
  const closed = { additionalProperties: false } as const;

  const HnswOptions = Type.Object(
    {
      dir: str('folder holding one sub-folder per collection; default <home>/indexes'),
      initialCapacity: int(1, 'slots allocated when a collection is created; default 1024'),
      exactScanBelow: int(0, 'a filtered query scans its matching rows exactly when at most this many match; default 2048'),
      exactScanSelectivity: Type.Optional(
        Type.Number({ minimum: 0, maximum: 1, description: 'scan exactly below this fraction of matching rows; default 0.02' }),
      ),
      threads: int(1, 'threads one call may use; default os.availableParallelism()'),
      snapshotWriter: Type.Optional(
        Type.Union([Type.Literal('copy'), Type.Literal('inline'), Type.Literal('fork')], {
          description:
            'copy: writes wait while a snapshot copies the graph in memory, a thread writes the copy; inline: writes wait while the graph is written; fork: a child process writes it, writes wait for the fork only; default copy',
        }),
      ),
    },
    closed,
  );

  const QdrantOptions = Type.Object(
    {
      url: str("Qdrant's REST endpoint; default http://127.0.0.1:6333"),
      apiKey: str('sent as the api-key header'),
      collectionPrefix: Type.Optional(Type.String({ description: 'prepended to every collection and alias name; default ""' })),
      shardNumber: int(1, 'shards per collection'),
      replicationFactor: int(1, 'copies of every shard'),
      writeConsistencyFactor: int(1, 'replicas that must apply a write'),
      onDisk: Type.Optional(Type.Boolean({ description: 'original vectors memory-mapped on disk; default false' })),
      timeout: int(1, 'per-request timeout, ms; default 30000'),
      retries: int(0, 'retries after 429, 503 or a reset connection; default 5'),
      retryDelay: int(0, 'first backoff delay, ms; default 200'),
      batchSize: int(1, 'points per upsert request; default 256'),
    },
    closed,
  );

  const SqliteOnlineOptions = Type.Object({ path: str('database file, relative to home, or :memory:; default <home>/online.db') }, closed);

  const RedisOptions = Type.Object(
    {
      url: str('redis://[user:pass@]host:port[/db]; default redis://127.0.0.1:6379'),
      keyPrefix: Type.Optional(Type.String({ description: 'prefix of every key; default nl:' })),
      cluster: Type.Optional(
        Type.Array(
          Type.Union([
            Type.String({ minLength: 1 }),
            Type.Object({ host: Type.String({ minLength: 1 }), port: Type.Integer({ minimum: 1, maximum: 65535 }) }, closed),
          ]),
          {
            minItems: 1,
            description: 'Redis Cluster seed nodes, host:port or {host, port}',
          },
        ),
      ),
      connectTimeoutMs: int(1, 'default 2000'),
      commandTimeoutMs: int(1, 'default 2000'),
      maxRetriesPerRequest: int(0, 'default 1'),
    },
    closed,
  );

  const path = Type.String({ minLength: 1, description: 'the file, relative to the definitions file' });
  const FileOptions = Type.Object({ path }, closed);
  const CsvOptions = Type.Object(
    { path, delimiter: Type.Optional(Type.String({ minLength: 1, maxLength: 1, description: 'field delimiter; default ,' })) },
    closed,
  );
  const SqliteSourceOptions = Type.Object(
    { path: Type.String({ minLength: 1, description: 'the SQLite database file' }), table: Type.String({ minLength: 1 }) },
    closed,
  );
  const PostgresSourceOptions = Type.Object(
    {
      url: Type.String({
        minLength: 1,
        description: 'postgres://user@host:port/db; ${VAR} is replaced from the environment when the source is read, so secrets stay out of the registry',
      }),
      table: str('a table (or schema.table) to read; give table or query'),
      query: str('a SELECT whose rows are the source; give table or query'),
      key: Type.String({ minLength: 1, description: 'unique, non-null column the rows are read in order of (keyset pages)' }),
      pageSize: int(1, 'rows per page; default 1000'),
    },
    closed,
  );

  return [
    defineVectorProvider({
      kind: 'hnsw',
      options: HnswOptions,
      create: async (options, ctx) => (await import('./vector/hnsw/provider.ts')).createHnswProvider(options, ctx),
    }),
    defineVectorProvider({
      kind: 'qdrant',
      options: QdrantOptions,
      create: async (options, ctx) =>
        (await peer('the qdrant provider', ['@qdrant/js-client-rest'], () => import('./vector/qdrant.ts'))).createQdrantProvider(options, ctx),
    }),
    defineOnlineStore({
      kind: 'sqlite',
      options: SqliteOnlineOptions,
      create: async (options, ctx) => (await import('./online/sqlite.ts')).createSqliteOnlineStore(options, ctx),
    }),
    defineOnlineStore({
      kind: 'redis',
      options: RedisOptions,
      create: async (options, ctx) => (await peer('the redis provider', ['ioredis'], () => import('./online/redis.ts'))).createRedisOnlineStore(options, ctx),
    }),
    defineRuntime({
      kind: 'onnx',
      model: 'folder',
      // Tokenizing and pooling run on the calling thread.
      supportsWorkers: true,
      create: async (spec) =>
        (await peer('the onnx runtime', ['onnxruntime-node', '@huggingface/tokenizers'], () => import('./embedding/onnx.ts'))).createOnnxModel(spec),
    }),
    defineRuntime({
      kind: 'transformers',
      model: 'folder-or-hub',
      // Tokenizing and tensor conversion run on the calling thread.
      supportsWorkers: true,
      create: async (spec) =>
        (await peer('the transformers runtime', ['@huggingface/transformers'], () => import('./embedding/transformers.ts'))).createTransformersModel(spec),
    }),
    // TensorFlow.js's WebAssembly backend runs a whole batch on the calling thread.
    defineRuntime({ kind: 'use', model: 'packaged', supportsWorkers: true, create: async (spec) => (await import('./embedding/use.ts')).createUseModel(spec) }),
    defineSource({ kind: 'csv', options: CsvOptions, create: async (spec) => (await import('./sources/csv.ts')).createCsvSource(spec) }),
    defineSource({ kind: 'jsonl', options: FileOptions, create: async (spec) => (await import('./sources/jsonl.ts')).createJsonlSource(spec) }),
    defineSource({ kind: 'sqlite', options: SqliteSourceOptions, create: async (spec) => (await import('./sources/sqlite.ts')).createSqliteSource(spec) }),
    defineSource({
      kind: 'postgres',
      options: PostgresSourceOptions,
      create: async (spec) => (await peer('the postgres source', ['pg'], () => import('./sources/postgres.ts'))).createPostgresSource(spec),
    }),
  ];
}
