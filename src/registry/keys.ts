import { createHash, randomBytes } from 'node:crypto';
import { nlError } from '../errors.ts';
import { MaterializationRegistry } from './materializations.ts';
import { osActor, type Actor, type ApiKeyInfo, type ApiKeyRecord } from './records.ts';
import { now } from './rows.ts';

/** API keys: created once (only the hash is kept), listed, revoked. */
export abstract class KeysRegistry extends MaterializationRegistry {
  // ---- API keys ----

  /** Creates a key; the secret is returned once and only its hash is stored. */
  async createKey(scope: ApiKeyRecord['scope'], features: string[] | null, actor: Actor = osActor()): Promise<{ key: string; record: ApiKeyRecord }> {
    const id = randomBytes(6).toString('hex');
    const key = `nl_${id}_${randomBytes(24).toString('base64url')}`;
    const t = now();
    await this.transaction(async (q) => {
      await q.run('INSERT INTO api_keys (id, hash, scope, features, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)', [
        id,
        hashKey(key),
        scope,
        features ? JSON.stringify(features) : null,
        t,
        actor,
      ]);
      await this.recordEvent({ actor, action: 'key.create', kind: 'key', name: id, detail: { scope, features } }, t, q);
    });
    return { key, record: { id, scope, features, createdAt: t } };
  }

  /** A key that may be used: revoked keys are not found. */
  async findKey(key: string): Promise<ApiKeyRecord | undefined> {
    const r = await this.sql.get('SELECT * FROM api_keys WHERE hash = ? AND revoked_at IS NULL', [hashKey(key)]);
    return r && { id: r.id, scope: r.scope, features: r.features ? JSON.parse(r.features) : null, createdAt: r.created_at };
  }

  /** Every key ever created, revoked ones included, oldest first. */
  async listKeys(): Promise<ApiKeyInfo[]> {
    return (await this.sql.all('SELECT * FROM api_keys ORDER BY created_at, rowid')).map((r) => ({
      id: r.id,
      scope: r.scope,
      features: r.features ? JSON.parse(r.features) : null,
      createdAt: r.created_at,
      createdBy: r.created_by,
      revokedAt: r.revoked_at,
      revokedBy: r.revoked_by,
    }));
  }

  /** Revokes key `id`: servers refuse it once their key cache expires (one second by default). */
  async revokeKey(id: string, actor: Actor = osActor()): Promise<ApiKeyInfo> {
    await this.transaction(async (q) => {
      const r = await q.get('SELECT revoked_at, revoked_by FROM api_keys WHERE id = ?', [id]);
      if (!r) throw nlError('NL_NOT_FOUND', `API key ${id} not found; \`nearline keys list\` shows the ids`);
      if (r.revoked_at) throw nlError('NL_CONFLICT', `API key ${id} was already revoked at ${r.revoked_at} by ${r.revoked_by}`);
      const t = now();
      await q.run('UPDATE api_keys SET revoked_at = ?, revoked_by = ? WHERE id = ?', [t, actor, id]);
      await this.recordEvent({ actor, action: 'key.revoke', kind: 'key', name: id }, t, q);
    });
    return (await this.listKeys()).find((k) => k.id === id)!;
  }

  /**
   * Keys ever created, revoked ones included: a server with keys stays closed when they are all revoked,
   * rather than opening to everyone.
   */
  async countKeys(): Promise<number> {
    return Number((await this.sql.get<{ n: number }>('SELECT count(*) AS n FROM api_keys'))!.n);
  }
}

export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}
