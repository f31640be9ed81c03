import type { FeatureStore, NearestRequest, NearestResult } from '../store/feature-store.ts';

interface Waiting {
  req: NearestRequest;
  resolve: (r: NearestResult) => void;
  reject: (e: unknown) => void;
}

/**
 * Gathers the single-query /v1/nearest calls that arrive in the same event-loop turn for the same feature
 * into one `store.nearestMany`: the feature is resolved once, and the provider searches the group as a
 * batch (split across its threads) instead of one round trip per query. A group costs no added latency:
 * it is flushed as soon as the turn's I/O callbacks have run.
 */
export class Coalescer {
  private readonly store: FeatureStore;
  private readonly maxBatch: number;
  private readonly pending = new Map<string, Waiting[]>();

  /** `maxBatch`: largest group sent at once. */
  constructor(store: FeatureStore, maxBatch = 64) {
    this.store = store;
    this.maxBatch = maxBatch;
  }

  nearest(req: NearestRequest): Promise<NearestResult> {
    return new Promise((resolve, reject) => {
      let group = this.pending.get(req.feature);
      if (!group) {
        group = [];
        this.pending.set(req.feature, group);
        setImmediate(() => this.flush(req.feature, group!));
      }
      group.push({ req, resolve, reject });
      if (group.length >= this.maxBatch) this.flush(req.feature, group);
    });
  }

  private flush(feature: string, group: Waiting[]): void {
    if (this.pending.get(feature) === group) this.pending.delete(feature);
    if (!group.length) return;
    const taken = group.splice(0);
    if (taken.length === 1) {
      this.store.nearest(taken[0].req).then(taken[0].resolve, taken[0].reject);
      return;
    }
    this.store
      .nearestMany(
        feature,
        taken.map((w) => w.req),
      )
      .then(
        (results) => taken.forEach((w, i) => w.resolve(results[i])),
        // One bad query fails the whole batch; answer each on its own so that only it gets the error.
        () => taken.forEach((w) => this.store.nearest(w.req).then(w.resolve, w.reject)),
      );
  }
}
