import { FeatureStore, type FeatureStoreOptions } from '../../store/feature-store.ts';

/** Opens the store for one command and always closes it, so indexes are flushed and files released. */
export async function withStore<T>(home: string, fn: (store: FeatureStore) => Promise<T>, opts: Omit<FeatureStoreOptions, 'home'> = {}): Promise<T> {
  const store = FeatureStore.open({ home, ...opts });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** JSON out: Float32Array vectors become number arrays. */
export function toJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, (_k, v) => (v instanceof Float32Array ? Array.from(v) : v), indent);
}
