import { nlError } from '../errors.ts';
import type { ApiKeyRecord, Registry } from '../registry/registry.ts';
import { parseRef } from '../refs.ts';

export type Scope = ApiKeyRecord['scope'];

const RANK: Record<Scope, number> = { serve: 0, write: 1, admin: 2 };

export interface AuthOptions {
  /**
   * How long the key count and verified keys are trusted before the registry is read again, ms.
   * Keys are created and revoked by `nearline keys` in another process; this is how soon the server sees
   * them. Default 500, so a revoked key is refused within a second.
   */
  cacheMs?: number;
}

/**
 * API keys: open while no key exists; once one does, every /v1 call needs `Authorization: Bearer KEY`
 * with a scope at least the route's, and a feature-limited key may only name its features.
 */
export class Auth {
  private readonly registry: Registry;
  private readonly cacheMs: number;
  private count = { value: 0, at: -Infinity };
  private readonly known = new Map<string, { key: ApiKeyRecord; at: number }>();

  constructor(registry: Registry, opts: AuthOptions = {}) {
    this.registry = registry;
    this.cacheMs = opts.cacheMs ?? 500;
  }

  /** Whether any key exists, i.e. whether /v1 needs one. */
  async required(): Promise<boolean> {
    const t = performance.now();
    if (t - this.count.at >= this.cacheMs) this.count = { value: await this.registry.countKeys(), at: t };
    return this.count.value > 0;
  }

  /** The caller's key, or null while the server is open; throws NL_UNAUTHORIZED. */
  async authenticate(header: string | undefined): Promise<ApiKeyRecord | null> {
    if (!(await this.required())) return null;
    const m = header === undefined ? null : /^Bearer[ ]+(\S+)[ ]*$/i.exec(header);
    if (!m) throw nlError('NL_UNAUTHORIZED');
    const secret = m[1];
    const t = performance.now();
    const hit = this.known.get(secret);
    if (hit && t - hit.at < this.cacheMs) return hit.key;
    const key = secret.length <= 256 ? await this.registry.findKey(secret) : undefined;
    if (!key) throw nlError('NL_UNAUTHORIZED');
    // Bounded: each entry was a valid key, and they are few; clearing now and then drops expired ones.
    if (this.known.size >= 1024) this.known.clear();
    this.known.set(secret, { key, at: t });
    return key;
  }

  requireScope(key: ApiKeyRecord | null, scope: Scope): void {
    if (key && RANK[key.scope] < RANK[scope]) throw nlError('NL_FORBIDDEN', `this key has scope ${key.scope}; the call needs ${scope}`);
  }

  /** Whether the key may use a feature reference (`name`, `name@variant`, `name@alias`). */
  async allows(key: ApiKeyRecord | null, ref: string): Promise<boolean> {
    if (!key?.features) return true;
    const { name } = parseRef(ref);
    for (const allowed of key.features) {
      const { name: allowedName, tag: allowedTag } = parseRef(allowed);
      if (allowedName !== name) continue;
      if (allowedTag === undefined || allowed === ref) return true;
      // The key names a variant or alias; compare what both resolve to now.
      try {
        if ((await this.registry.resolveFeature(allowed)).variant === (await this.registry.resolveFeature(ref)).variant) return true;
      } catch {
        // Unknown either side: not this entry.
      }
    }
    return false;
  }

  /** The items whose feature reference the key may use, in order. */
  async visible<T>(key: ApiKeyRecord | null, items: T[], ref: (item: T) => string | null): Promise<T[]> {
    if (!key?.features) return items;
    const keep = await Promise.all(
      items.map((item) => {
        const r = ref(item);
        return r === null ? true : this.allows(key, r);
      }),
    );
    return items.filter((_, i) => keep[i]);
  }

  /** Throws NL_FORBIDDEN for the first reference outside the key's features. */
  async requireFeatures(key: ApiKeyRecord | null, refs: Iterable<string>): Promise<void> {
    for (const ref of refs) {
      if (!(await this.allows(key, ref))) throw nlError('NL_FORBIDDEN', `this key may not use feature ${ref}`);
    }
  }
}
