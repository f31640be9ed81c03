import { formatRef } from '../refs.ts';
import { DefinitionsRegistry } from './definitions.ts';
import { osActor, type MaterializationState } from './records.ts';
import { now } from './rows.ts';

/** A variant's materialization: checkpoints, publication and failure. */
export abstract class MaterializationRegistry extends DefinitionsRegistry {
  // ---- materialization state ----

  async getMaterialization(feature: string, variant: string): Promise<MaterializationState | undefined> {
    const r = await this.sql.get('SELECT * FROM materializations WHERE feature = ? AND variant = ?', [feature, variant]);
    return (
      r && {
        status: r.status,
        position: r.position,
        line: r.line,
        ...(r.cursor === null || r.cursor === undefined ? {} : { cursor: r.cursor }),
        rowsRead: r.rows_read,
        rowsSkipped: r.rows_skipped,
        startedAt: r.started_at,
        updatedAt: r.updated_at,
        finishedAt: r.finished_at,
        error: r.error,
      }
    );
  }

  /** Starts (or restarts from zero) a materialization run. */
  async beginMaterialization(feature: string, variant: string): Promise<void> {
    const t = now();
    await this.change(async (q) => {
      await q.run(
        `INSERT INTO materializations (feature, variant, status, started_at, updated_at) VALUES (?, ?, 'running', ?, ?)
         ON CONFLICT(feature, variant) DO UPDATE SET status = 'running', position = 0, line = 0, cursor = NULL, rows_read = 0, rows_skipped = 0,
           started_at = excluded.started_at, updated_at = excluded.updated_at, finished_at = NULL, error = NULL`,
        [feature, variant, t, t],
      );
      await q.run("UPDATE features SET status = 'materializing', rows = 0 WHERE name = ? AND variant = ?", [feature, variant]);
      await q.run('DELETE FROM log_offsets WHERE feature = ? AND variant = ?', [feature, variant]);
    });
  }

  /** Marks an interrupted run as running again; its checkpoint stays where it was. */
  async resumeMaterialization(feature: string, variant: string): Promise<void> {
    const t = now();
    await this.change(async (q) => {
      await q.run("UPDATE materializations SET status = 'running', finished_at = NULL, error = NULL, updated_at = ? WHERE feature = ? AND variant = ?", [
        t,
        feature,
        variant,
      ]);
      await q.run("UPDATE features SET status = 'materializing' WHERE name = ? AND variant = ?", [feature, variant]);
    });
  }

  /** Drops a run's checkpoint, so the next run starts from the first row. */
  async forgetCheckpoint(feature: string, variant: string): Promise<void> {
    await this.sql.run('DELETE FROM materializations WHERE feature = ? AND variant = ?', [feature, variant]);
  }

  /** Records how far a run got; called only after the providers made that much durable. */
  async checkpoint(
    feature: string,
    variant: string,
    at: { position: number; line: number; cursor?: string; rowsRead: number; rowsSkipped: number },
  ): Promise<void> {
    await this.sql.run(
      "UPDATE materializations SET status = 'running', position = ?, line = ?, cursor = ?, rows_read = ?, rows_skipped = ?, updated_at = ? WHERE feature = ? AND variant = ?",
      [at.position, at.line, at.cursor ?? null, at.rowsRead, at.rowsSkipped, now(), feature, variant],
    );
  }

  /** Publishes the variant with the log offset its data contains: from here on it is servable and follows pushes. */
  async finishMaterialization(feature: string, variant: string, rows: number, logOffset = 0): Promise<void> {
    const t = now();
    await this.change(async (q) => {
      await this.setLogOffset(feature, variant, logOffset, q);
      await q.run("UPDATE materializations SET status = 'done', finished_at = ?, updated_at = ? WHERE feature = ? AND variant = ?", [t, t, feature, variant]);
      await q.run("UPDATE features SET status = 'materialized', rows = ?, materialized_at = ? WHERE name = ? AND variant = ?", [rows, t, feature, variant]);
      await this.recordEvent({ actor: osActor(), action: 'materialized', kind: 'feature', name: formatRef(feature, variant), feature, detail: { rows } }, t, q);
    });
  }

  async failMaterialization(feature: string, variant: string, error: string): Promise<void> {
    const t = now();
    await this.change(async (q) => {
      await q.run("UPDATE materializations SET status = 'failed', error = ?, updated_at = ? WHERE feature = ? AND variant = ?", [error, t, feature, variant]);
      await q.run("UPDATE features SET status = 'failed' WHERE name = ? AND variant = ?", [feature, variant]);
      await this.recordEvent(
        { actor: osActor(), action: 'materialize.failed', kind: 'feature', name: formatRef(feature, variant), feature, detail: { error } },
        t,
        q,
      );
    });
  }

  /** Keeps a materialized variant's row count current after online upserts and deletes. */
  async setFeatureRows(feature: string, variant: string, rows: number): Promise<void> {
    await this.sql.run('UPDATE features SET rows = ? WHERE name = ? AND variant = ?', [rows, feature, variant]);
    this.invalidate();
    await this.announce(this.sql);
  }
}
