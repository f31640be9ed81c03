import { spawnSync } from 'node:child_process';
import path from 'node:path';

export const BIN = path.resolve(import.meta.dirname, '../../bin/nearline.mjs');

/** Runs the CLI as a user would, stdin not a terminal. */
export function cli(home: string, ...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: home, env: { ...process.env, NEARLINE_HOME: home }, input: '' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
