import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** What a listening server writes under `<home>/run/`, so that commands in other processes know it serves this home. */
export interface ServingRecord {
  pid: number;
  address: string;
  startedAt: string;
}

const dir = (home: string) => path.join(home, 'run');

/** Announces a server on `home`; the returned function withdraws the announcement (on a clean close). */
export function announceServing(home: string, address: string): () => void {
  mkdirSync(dir(home), { recursive: true });
  const file = path.join(dir(home), `serve-${process.pid}.json`);
  const record: ServingRecord = { pid: process.pid, address, startedAt: new Date().toISOString() };
  writeFileSync(file, JSON.stringify(record) + '\n');
  return () => rmSync(file, { force: true });
}

/**
 * The servers serving `home` now. A record counts only if its process is alive and its address answers
 * /healthz, so a crashed server (record left behind, process gone or its pid reused) is not counted; its record
 * is removed.
 */
export async function findServing(home: string, timeoutMs = 1000): Promise<ServingRecord[]> {
  let files: string[];
  try {
    files = readdirSync(dir(home)).filter((f) => /^serve-\d+\.json$/.test(f));
  } catch {
    return [];
  }
  const found = await Promise.all(
    files.map(async (f) => {
      const file = path.join(dir(home), f);
      let record: ServingRecord;
      try {
        record = JSON.parse(readFileSync(file, 'utf8')) as ServingRecord;
      } catch {
        return undefined;
      }
      if (isAlive(record.pid) && (await answers(record.address, timeoutMs))) return record;
      rmSync(file, { force: true });
      return undefined;
    }),
  );
  return found.filter((r): r is ServingRecord => r !== undefined);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function answers(address: string, timeoutMs: number): Promise<boolean> {
  // A server bound to every interface answers on loopback.
  const url = new URL('/healthz', address.replace('://0.0.0.0', '://127.0.0.1').replace('://[::]', '://[::1]'));
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return res.ok && ((await res.json()) as { status?: string }).status === 'ok';
  } catch {
    return false;
  }
}
