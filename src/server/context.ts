import type { ApiKeyRecord } from '../registry/registry.ts';
import type { FeatureStore } from '../store/feature-store.ts';
import type { Auth, Scope } from './auth.ts';
import type { Lane } from './limiter.ts';
import type { Metrics } from './metrics.ts';

/** What every route plugin is given as its options. */
export interface ServerContext {
  store: FeatureStore;
  auth: Auth;
  metrics: Metrics;
  /** `cheap`: plain vector/id searches; `heavy`: large k or ef, filters, diversity, text embedding; `push`: writes. */
  lanes: { cheap: Lane; heavy: Lane; push: Lane };
  /** Set once the materialized embedding features' indexes are loaded. */
  readiness: { ready: boolean; failed: Array<{ feature: string; message: string }>; caughtUp?: boolean };
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The least scope a key needs for the route; routes without one are open. */
    scope?: Scope;
  }
  interface FastifyRequest {
    /** The caller's key; null while no key exists. */
    apiKey: ApiKeyRecord | null;
    /** `name@variant` that served the request, for metrics labels. */
    servedFeature?: string;
  }
}
