/** What the registry stores and answers with: its records, events, actors and the SQL it runs them through. */
import os from 'node:os';
import type { AliasDef, EmbeddingFeatureDef, ModelDef, ProviderDef, ScalarFeatureDef } from '../config.ts';
import type { ErrorCode } from '../errors.ts';

export type FeatureStatus = 'registered' | 'materializing' | 'materialized' | 'failed' | 'dropped';

interface Registered {
  status: FeatureStatus;
  rows: number;
  createdAt: string;
  materializedAt: string | null;
}

/** A registered feature variant, narrowed by `kind` like its definition; a registered embedding always has `dims`. */
export type FeatureRecord = EmbeddingFeatureRecord | ScalarFeatureRecord;
export type EmbeddingFeatureRecord = EmbeddingFeatureDef & Registered & { dims: number };
export type ScalarFeatureRecord = ScalarFeatureDef & Registered;

export interface ModelRecord extends ModelDef {
  dims: number;
  sha256: string;
  createdAt: string;
}

export interface ProviderRecord extends ProviderDef {
  createdAt: string;
}

export interface AliasRecord extends AliasDef {
  updatedAt: string;
}

export interface MaterializationState {
  status: 'running' | 'done' | 'failed';
  position: number;
  line: number;
  /** A keyset source's resume point (its last key), when its position alone cannot say where to continue. */
  cursor?: string;
  rowsRead: number;
  rowsSkipped: number;
  startedAt: string;
  updatedAt: string;
  finishedAt: string | null;
  error: string | null;
}

export type PlanAction = 'create' | 'update' | 'unchanged' | 'refused';

export interface PlanItem {
  action: PlanAction;
  kind: 'provider' | 'entity' | 'source' | 'model' | 'feature' | 'alias';
  name: string;
  reason?: string;
  code?: ErrorCode;
  /** Set when applying the item changes what running callers get: shown, and confirmed before it is written. */
  warning?: string;
}

/** What apply learns about a model by loading it: written to the registry with the model. */
export interface ModelProbe {
  dims: number;
  sha256: string;
}

export interface ShadowRecord {
  feature: string;
  alias: string;
  variant: string;
  fraction: number;
  /** Mirrored queries measured, and their mean overlap@k with the alias's own answer (null before the first). */
  queries: number;
  overlap: number | null;
  errors: number;
  since: string;
  updatedAt: string;
}

export interface ApiKeyRecord {
  id: string;
  scope: 'serve' | 'write' | 'admin';
  features: string[] | null;
  createdAt: string;
}

/** A key as `nearline keys list` shows it: never its secret or hash. */
export interface ApiKeyInfo extends ApiKeyRecord {
  createdBy: string | null;
  revokedAt: string | null;
  revokedBy: string | null;
}

/**
 * Who changed the registry: `key:<id>` for a call with an API key, `anonymous` for one to a server that
 * has no key yet, `user:<name>` for the CLI (the OS user).
 */
export type Actor = string;

/** The OS user running this process, as an actor. */
export function osActor(): Actor {
  try {
    return `user:${os.userInfo().username}`;
  } catch {
    // No passwd entry (some containers): the environment or the uid still says who.
    return `user:${process.env.USER ?? process.env.LOGNAME ?? `uid ${process.getuid?.() ?? '?'}`}`;
  }
}

/** The actor for a request that carries `key`, or none while the server is open. */
export function keyActor(key: { id: string } | null | undefined): Actor {
  return key ? `key:${key.id}` : 'anonymous';
}

/** One change to the registry, kept forever: when, by whom, what. */
export interface RegistryEvent {
  id: number;
  at: string;
  actor: Actor;
  /** `create`, `update`, `alias.set`, `materialized`, `materialize.failed`, `key.create`, `key.revoke`, ... */
  action: string;
  /** What changed: `provider`, `entity`, `source`, `model`, `feature`, `alias`, `key`. */
  kind: string;
  /** `name@variant`, `feature@alias`, a key id. */
  name: string;
  /** The feature name the change concerns, when it concerns one. */
  feature: string | null;
  detail: Record<string, unknown> | null;
}

export type NewRegistryEvent = Omit<RegistryEvent, 'id' | 'at' | 'feature' | 'detail'> & { feature?: string | null; detail?: Record<string, unknown> | null };

/** Runs SQL against one registry backend: `?` placeholders, rows as plain objects. */
export interface Sql {
  all<T = Row>(sql: string, params?: readonly unknown[]): Promise<T[]>;
  get<T = Row>(sql: string, params?: readonly unknown[]): Promise<T | undefined>;
  /** Resolves to the number of rows changed. */
  run(sql: string, params?: readonly unknown[]): Promise<number>;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Row = Record<string, any>;
