// nearline's library API: the store, the registry, definitions, provider interfaces and factories. Importing it
// runs nothing and loads no server and no model runtime; the HTTP server is `nearline/server`, the client `nearline/client`.
export { FeatureStore, LIMITS, collectionSpec, openStore } from './store/feature-store.ts';
export type { FeatureStoreOptions, NearestRequest, NearestResult, Query } from './store/feature-store.ts';
export { Registry } from './registry/registry.ts';
export { openRegistry, registryLocation } from './registry/open.ts';
export { PostgresRegistry } from './registry/postgres.ts';
export { SqliteRegistry } from './registry/sqlite.ts';
export type {
  FeatureRecord,
  EmbeddingFeatureRecord,
  ScalarFeatureRecord,
  ModelRecord,
  PlanItem,
  PlanAction,
  AliasRecord,
  MaterializationState,
} from './registry/registry.ts';
export { loadDefinitions, validateDefinitions } from './config.ts';
export type {
  Definitions,
  FeatureDef,
  EmbeddingFeatureDef,
  ScalarFeatureDef,
  IndexParams,
  ModelDef,
  SourceDef,
  ProviderDef,
  EntityDef,
  AliasDef,
} from './config.ts';
export { NearlineError, ERRORS, isNearlineError } from './errors.ts';
export type { ErrorCode } from './errors.ts';
export { validateFilter, validateQuery, compileFilter } from './filter.ts';
export type { Filter, FilterOp, FeatureRef, Hit, Metadata, Metric, OnlineValue, Scalar, Vector } from './types.ts';
export { createEmbeddingModel, createOnlineStore, createSource, createVectorProvider } from './providers/index.ts';
export type { ProviderContext } from './providers/index.ts';
export { defineOnlineStore, defineRuntime, defineSource, defineVectorProvider, isPlugin } from './plugins.ts';
export type { OnlineStorePlugin, Plugin, RuntimePlugin, SourcePlugin, VectorProviderPlugin } from './plugins.ts';
/** Input checks an online store plugin shares with the built-in stores, so it answers bad input with the same codes. */
export { checkFeatureKey, checkGetArgs, validatePut } from './providers/online/values.ts';
export type { VectorProvider, VectorCollection, CollectionSpec, SearchQuery, VectorRecord } from './providers/vector/types.ts';
export type { OnlineStore } from './providers/online/types.ts';
export type { EmbeddingModel, ModelSpec } from './providers/embedding/types.ts';
export type { Source, SourceRow, SourceSpec } from './providers/sources/types.ts';
export type { MaterializeOptions, MaterializeResult } from './materialize/job.ts';
