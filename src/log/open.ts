import path from 'node:path';
import { nlError } from '../errors.ts';
import { openFileLog } from './file.ts';
import type { Log } from './types.ts';

/**
 * Where source logs live: `file` (one folder per source under `dir`, one appending process) or `redis://…` /
 * `rediss://…` (one Redis Stream per source, shared by every node that names the same server).
 */
export type LogLocation = { kind: 'file'; dir: string } | { kind: 'redis'; url: string };

/** `NEARLINE_LOG` (or `setting`): `file` or unset -> file logs under `dir`; a Redis URL -> Redis Streams. */
export function logLocation(dir: string, setting: string | undefined = process.env.NEARLINE_LOG): LogLocation {
  const value = setting?.trim();
  if (!value || value === 'file') return { kind: 'file', dir };
  if (/^rediss?:\/\//.test(value)) return { kind: 'redis', url: value };
  throw nlError('NL_BAD_REQUEST', `NEARLINE_LOG must be "file" or a redis:// URL, got ${JSON.stringify(value)}`);
}

/** Opens one source's log where `where` says. File logs append only when `writable`; Redis logs always may. */
export async function openLog(where: LogLocation, name: string, opts: { writable?: boolean; segmentBytes?: number } = {}): Promise<Log> {
  if (where.kind === 'file') return openFileLog(path.join(where.dir, name), name, opts);
  const { openRedisLog } = await import('./redis.ts');
  return openRedisLog(where.url, name);
}
