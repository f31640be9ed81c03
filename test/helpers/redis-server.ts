import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A throwaway redis-server owned by one test file: loopback only, its own temp dir; no persistence, or with
 * `durable` an append-only file fsynced before each reply (what a shared log needs: acknowledged = fsynced).
 */
export interface RedisServer {
  readonly port: number;
  readonly url: string;
  readonly pid: number;
  /** Sends a signal to this server only (SIGSTOP / SIGCONT simulate a stalled server). */
  signal(signal: NodeJS.Signals): void;
  /** Stops the server and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

const BINARY = process.env.REDIS_SERVER_BIN ?? 'redis-server';

/** Whether Redis-backed tests should be skipped: only when redis-server is missing and NEARLINE_SKIP_REDIS=1. */
export function skipRedisTests(): boolean {
  return process.env.NEARLINE_SKIP_REDIS === '1' && !hasRedisServer();
}

export function hasRedisServer(): boolean {
  const probe = spawnSync(BINARY, ['--version'], { stdio: 'ignore' });
  return probe.error === undefined && probe.status === 0;
}

/** A loopback port nothing listens on at the moment of the call. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

/**
 * Starts redis-server on a free loopback port (or `port`) and resolves once it accepts connections.
 * Fails with an actionable message when the binary is missing: CI installs it, so a missing binary is an error.
 */
export async function startRedisServer(opts: { port?: number; timeoutMs?: number; args?: string[]; durable?: boolean } = {}): Promise<RedisServer> {
  if (!hasRedisServer()) {
    throw new Error(
      `${BINARY} not found: install Redis (apt-get install redis-server, brew install redis) or set NEARLINE_SKIP_REDIS=1 to skip the Redis tests`,
    );
  }
  // A port picked by freePort() can be taken before redis binds it; retry on a fresh one.
  for (let attempt = 0; ; attempt++) {
    const port = opts.port ?? (await freePort());
    try {
      const durable = opts.durable ? ['--appendonly', 'yes', '--appendfsync', 'always'] : [];
      return await launch(port, opts.timeoutMs ?? 10_000, [...durable, ...(opts.args ?? [])]);
    } catch (e) {
      if (opts.port !== undefined || attempt >= 3 || !String(e).includes('Address already in use')) throw e;
    }
  }
}

async function launch(port: number, timeoutMs: number, extraArgs: string[]): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'nearline-redis-'));
  const child = spawn(
    BINARY,
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
      '--daemonize',
      'no',
      '--loglevel',
      'notice',
      ...extraArgs,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const onExit = () => child.kill('SIGKILL');
  process.once('exit', onExit);
  const cleanup = () => {
    process.removeListener('exit', onExit);
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await untilReady(child, 'Ready to accept connections', `redis-server on port ${port}`, timeoutMs);
  } catch (e) {
    child.kill('SIGKILL');
    cleanup();
    throw e;
  }

  let stopped: Promise<void> | undefined;
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    pid: child.pid!,
    signal: (signal) => {
      child.kill(signal);
    },
    stop: () => (stopped ??= stop(child).finally(cleanup)),
  };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // A stopped (SIGSTOP) server would ignore SIGTERM until continued.
  child.kill('SIGCONT');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

/** A throwaway Redis Cluster: masters only, slots split evenly, every node a child process of this test. */
export interface RedisCluster {
  readonly nodes: RedisServer[];
  stop(): Promise<void>;
}

export async function startRedisCluster(size = 3): Promise<RedisCluster> {
  const nodes: RedisServer[] = [];
  const busPorts: number[] = [];
  try {
    for (let i = 0; i < size; i++) {
      // An explicit bus port: the default (port + 10000) can fall outside the port range or be taken.
      const busPort = await freePort();
      busPorts.push(busPort);
      nodes.push(await startRedisServer({ args: ['--cluster-enabled', 'yes', '--cluster-port', String(busPort), '--cluster-node-timeout', '2000'] }));
    }
    await formCluster(nodes, busPorts);
    return { nodes, stop: async () => void (await Promise.all(nodes.map((n) => n.stop()))) };
  } catch (e) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw e;
  }
}

async function formCluster(nodes: RedisServer[], busPorts: number[]): Promise<void> {
  const { Redis } = await import('ioredis');
  const clients = nodes.map((n) => new Redis(n.port, '127.0.0.1', { lazyConnect: true }));
  try {
    const per = Math.ceil(16384 / nodes.length);
    for (let i = 0; i < nodes.length; i++) {
      await clients[i].call('CLUSTER', 'ADDSLOTSRANGE', String(i * per), String(Math.min(16383, (i + 1) * per - 1)));
      if (i > 0) await clients[0].call('CLUSTER', 'MEET', '127.0.0.1', String(nodes[i].port), String(busPorts[i]));
    }
    const deadline = Date.now() + 20_000;
    for (;;) {
      const infos = await Promise.all(clients.map((c) => c.call('CLUSTER', 'INFO') as Promise<string>));
      if (infos.every((info) => info.includes('cluster_state:ok') && info.includes(`cluster_known_nodes:${nodes.length}`))) return;
      if (Date.now() > deadline) throw new Error(`redis cluster did not converge:\n${infos.join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    for (const c of clients) c.disconnect();
  }
}

/** Resolves once `child` prints `ready` (stdout or stderr); rejects, with what it printed, if it exits or times out first. */
export function untilReady(child: ChildProcess, ready: string, what: string, timeoutMs: number): Promise<void> {
  let output = '';
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} not ready after ${timeoutMs} ms:\n${output}`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes(ready)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code ?? signal}):\n${output}`));
    });
  });
}
