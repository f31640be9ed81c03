import type { OnlineValue } from '../../types.ts';

/**
 * Online store: feature values by entity id. A feature key is `name@variant`, so variants never collide.
 * Batch methods are the primary API: serving reads many ids x many features in one call.
 */
export interface OnlineStore {
  readonly kind: string;
  readonly name: string;
  open(): Promise<void>;
  close(): Promise<void>;
  /** Writes values of one feature key; `null` deletes the id's value. Validates all rows before writing. */
  put(feature: string, rows: Array<[id: string, value: OnlineValue]>): Promise<void>;
  /** Reads ids x features in one round trip: `result[i][j]` is ids[i]'s value of features[j], `null` if absent. */
  get(ids: string[], features: string[]): Promise<OnlineValue[][]>;
  /** Drops every value of a feature key. */
  deleteFeature(feature: string): Promise<void>;
  /** How many ids hold a value of the feature key. */
  count(feature: string): Promise<number>;
  /**
   * Makes every write so far survive a power loss, where writes are not fsynced one by one. Absent: each
   * write is as durable as the backend makes it when it returns.
   */
  flush?(): Promise<void>;
}
