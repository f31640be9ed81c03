import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, untilReady } from './redis-server.ts';

/** A throwaway PostgreSQL cluster owned by one test file: initdb into a temp dir, loopback only, trust auth. */
export interface PostgresServer {
  readonly port: number;
  /** postgres://postgres@127.0.0.1:<port>/postgres */
  readonly url: string;
  readonly pid: number;
  /** Creates an empty database and returns its URL: one per test keeps tests apart without a new cluster. */
  createDatabase(name?: string): Promise<string>;
  /** Stops the server and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

/** The directory holding initdb and postgres: POSTGRES_BIN_DIR, the newest /usr/lib/postgresql/<n>/bin, or PATH. */
export function postgresBinDir(): string | undefined {
  const fromEnv = process.env.POSTGRES_BIN_DIR;
  if (fromEnv) return existsSync(join(fromEnv, 'postgres')) ? fromEnv : undefined;
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const versions = readdirSync(debian)
      .filter((v) => existsSync(join(debian, v, 'bin', 'postgres')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions.length > 0) return join(debian, versions[0], 'bin');
  }
  const onPath = spawnSync('sh', ['-c', 'command -v postgres'], { encoding: 'utf8' });
  const found = onPath.status === 0 ? onPath.stdout.trim() : '';
  return found ? join(found, '..') : undefined;
}

export function hasPostgres(): boolean {
  return postgresBinDir() !== undefined;
}

/** Whether PostgreSQL-backed tests should be skipped: only when the server is missing and NEARLINE_SKIP_POSTGRES=1. */
export function skipPostgresTests(): boolean {
  return process.env.NEARLINE_SKIP_POSTGRES === '1' && !hasPostgres();
}

/** PostgreSQL refuses to run as root: as root the cluster belongs to the `postgres` user, otherwise to us. */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => {
    const out = spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
    if (out.status !== 0) throw new Error('running as root needs a `postgres` user to own the test cluster (apt-get install postgresql creates it)');
    return Number(out.stdout.trim());
  };
  return { uid: id('-u'), gid: id('-g') };
}

/**
 * Creates a cluster with initdb and starts postgres on a free loopback port; resolves once it accepts connections.
 * Fails with an actionable message when the binaries are missing: CI installs them, so that is an error.
 */
export async function startPostgres(opts: { timeoutMs?: number } = {}): Promise<PostgresServer> {
  const bin = postgresBinDir();
  if (!bin) {
    throw new Error(
      'PostgreSQL not found: install it (apt-get install postgresql, brew install postgresql), set POSTGRES_BIN_DIR, or set NEARLINE_SKIP_POSTGRES=1 to skip the PostgreSQL tests',
    );
  }
  const user = serverUser();
  const dir = mkdtempSync(join(tmpdir(), 'nearline-pg-'));
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  const env = { ...process.env, LC_ALL: 'C', LANG: 'C' };
  const init = spawnSync(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth-local=trust', '--auth-host=trust', '-E', 'UTF8', '--locale=C'], {
    encoding: 'utf8',
    env,
    cwd: dir,
    ...user,
  });
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed (${init.status ?? init.error}):\n${init.stdout}${init.stderr}`);
  }
  // A port picked by freePort() can be taken before postgres binds it; retry on a fresh one.
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    try {
      return await launch({ bin, dir, data, port, env, user, timeoutMs: opts.timeoutMs ?? 30_000 });
    } catch (e) {
      if (attempt >= 3 || !/could not bind|already in use/i.test(String(e))) {
        rmSync(dir, { recursive: true, force: true });
        throw e;
      }
    }
  }
}

interface LaunchOptions {
  bin: string;
  dir: string;
  data: string;
  port: number;
  env: NodeJS.ProcessEnv;
  user: { uid: number; gid: number } | undefined;
  timeoutMs: number;
}

async function launch({ bin, dir, data, port, env, user, timeoutMs }: LaunchOptions): Promise<PostgresServer> {
  const child = spawn(join(bin, 'postgres'), ['-D', data, '-p', String(port), '-h', '127.0.0.1', '-k', dir, '-c', 'fsync=on', '-c', 'max_connections=200'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
    cwd: dir,
    ...user,
  });
  const onExit = () => child.kill('SIGKILL');
  process.once('exit', onExit);

  try {
    await untilReady(child, 'database system is ready to accept connections', `postgres on port ${port}`, timeoutMs);
  } catch (e) {
    child.kill('SIGKILL');
    process.removeListener('exit', onExit);
    throw e;
  }

  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  let databases = 0;
  let stopped: Promise<void> | undefined;
  return {
    port,
    url,
    pid: child.pid!,
    createDatabase: async (name = `t${process.pid}_${++databases}`) => {
      const { default: pg } = await import('pg');
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE "${name}"`);
      } finally {
        await client.end();
      }
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    stop: () =>
      (stopped ??= stop(child).finally(() => {
        process.removeListener('exit', onExit);
        rmSync(dir, { recursive: true, force: true });
      })),
  };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // SIGINT is PostgreSQL's fast shutdown: it disconnects clients instead of waiting for them.
  child.kill('SIGINT');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}
