import { formatRef } from '../refs.ts';
import { KeysRegistry } from './keys.ts';
import { osActor, type Actor, type ShadowRecord } from './records.ts';
import { now } from './rows.ts';

export * from './records.ts';
export { canonical, modelSpec } from './rows.ts';
export { hashKey } from './keys.ts';

/**
 * The registry: providers, entities, sources, models, features (name@variant), aliases, materialization state
 * and API keys. Every method is asynchronous; `SqliteRegistry` (one file, the default) and `PostgresRegistry`
 * (many writers and serving nodes) implement the storage, this class everything the registry decides.
 * Open one with `openRegistry` (src/registry/open.ts).
 *
 * The class is built in layers, one file each: core.ts (the storage contract, reads, reference resolution, the
 * audit trail), definitions.ts (plan and commit, aliases), materializations.ts (checkpoints, publication),
 * keys.ts (API keys), and this file (drop, shadows, leases). records.ts holds the record types.
 */
export abstract class Registry extends KeysRegistry {
  // ---- lifecycle: drop, shadows, leases ----

  /** Marks a variant dropped (its data is removed by the store) and records who did; the record and its lineage stay. */
  async markDropped(feature: string, variant: string, actor: Actor = osActor()): Promise<void> {
    await this.change(async (q) => {
      await q.run('UPDATE features SET dropped_at = ? WHERE name = ? AND variant = ?', [now(), feature, variant]);
      await q.run('DELETE FROM log_offsets WHERE feature = ? AND variant = ?', [feature, variant]);
      await this.recordEvent({ actor, action: 'drop', kind: 'feature', name: formatRef(feature, variant), feature }, undefined, q);
    });
  }

  /** The variant an alias named before its current one: what a rollback moves it back to. */
  async previousAliasVariant(feature: string, name: string): Promise<string | undefined> {
    const row = await this.sql.get<{ variant: string; previous: string | null }>(
      'SELECT variant, previous FROM alias_history WHERE feature = ? AND name = ? ORDER BY rowid DESC LIMIT 1',
      [feature, name],
    );
    return row?.previous ?? undefined;
  }

  async setShadow(feature: string, alias: string, variant: string, fraction: number): Promise<void> {
    const t = now();
    await this.sql.run(
      `INSERT INTO shadows (feature, alias, variant, fraction, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT(feature, alias) DO UPDATE SET variant = excluded.variant, fraction = excluded.fraction, queries = 0, overlap_sum = 0, errors = 0,
         created_at = CASE WHEN shadows.variant = excluded.variant THEN shadows.created_at ELSE excluded.created_at END, updated_at = excluded.updated_at`,
      [feature, alias, variant, fraction, t, t],
    );
  }

  async deleteShadow(feature: string, alias: string): Promise<boolean> {
    return (await this.sql.run('DELETE FROM shadows WHERE feature = ? AND alias = ?', [feature, alias])) > 0;
  }

  async listShadows(feature?: string): Promise<ShadowRecord[]> {
    const rows =
      feature === undefined
        ? await this.sql.all('SELECT * FROM shadows ORDER BY feature, alias')
        : await this.sql.all('SELECT * FROM shadows WHERE feature = ? ORDER BY alias', [feature]);
    return rows.map((r) => ({
      feature: r.feature,
      alias: r.alias,
      variant: r.variant,
      fraction: r.fraction,
      queries: r.queries,
      overlap: r.queries ? r.overlap_sum / r.queries : null,
      errors: r.errors,
      since: r.created_at,
      updatedAt: r.updated_at,
    }));
  }

  /** Adds what a server measured on mirrored queries since its last report. */
  async addShadowResults(feature: string, alias: string, variant: string, queries: number, overlapSum: number, errors: number): Promise<void> {
    await this.sql.run(
      'UPDATE shadows SET queries = queries + ?, overlap_sum = overlap_sum + ?, errors = errors + ?, updated_at = ? WHERE feature = ? AND alias = ? AND variant = ?',
      [queries, overlapSum, errors, now(), feature, alias, variant],
    );
  }

  /**
   * Takes (or renews) the build lease of a variant for `ttlMs`. Refused while another holder's lease runs,
   * unless that holder is a process of this host that no longer exists (killed: its lease is taken over at once).
   */
  async acquireLease(
    feature: string,
    variant: string,
    holder: { id: string; host: string; pid: number },
    ttlMs: number,
    alive: (pid: number) => boolean,
  ): Promise<{ ok: true } | { ok: false; holder: string; expiresAt: number }> {
    return this.transaction(async (q) => {
      const cur = await q.get('SELECT * FROM leases WHERE feature = ? AND variant = ?', [feature, variant]);
      const t = Date.now();
      if (cur && cur.holder !== holder.id && cur.expires_at > t && !(cur.host === holder.host && !alive(cur.pid))) {
        return { ok: false as const, holder: cur.holder, expiresAt: cur.expires_at };
      }
      await q.run(
        'INSERT INTO leases VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(feature, variant) DO UPDATE SET holder = excluded.holder, host = excluded.host, pid = excluded.pid, expires_at = excluded.expires_at',
        [feature, variant, holder.id, holder.host, holder.pid, t + ttlMs],
      );
      return { ok: true as const };
    });
  }

  async releaseLease(feature: string, variant: string, holder: string): Promise<void> {
    await this.sql.run('DELETE FROM leases WHERE feature = ? AND variant = ? AND holder = ?', [feature, variant, holder]);
  }
}
