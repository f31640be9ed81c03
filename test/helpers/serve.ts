import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

/** The CLI entry point: with NEARLINE_FROM_SOURCE=1 (vitest sets it) it runs the TypeScript sources. */
export const BIN = path.resolve(import.meta.dirname, '../../bin/nearline.mjs');

export interface ServeOptions {
  /** Extra arguments of `nearline serve`. */
  args?: string[];
  /** Environment of the process (default: this one's). */
  env?: NodeJS.ProcessEnv;
  /** A command the server runs under, e.g. ['taskset', '-c', '0']. */
  prefix?: string[];
  /** Once listening, wait at most this many ms for /readyz to answer 200. Default 60 s. */
  readyMs?: number;
}

/** Starts `nearline serve` on a free loopback port; resolves with its base URL once /readyz says ready. */
export async function serveProcess(home: string, opts: ServeOptions = {}): Promise<{ url: string; child: ChildProcess }> {
  const argv = [process.execPath, BIN, 'serve', '--port', '0', '--home', home, ...(opts.args ?? [])];
  const [cmd, ...rest] = [...(opts.prefix ?? []), ...argv];
  const child = spawn(cmd, rest, { cwd: home, stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
  const onExit = () => child.kill('SIGKILL');
  process.once('exit', onExit);
  child.once('exit', () => process.removeListener('exit', onExit));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d;
      // The CLI's own line, printed whatever the log level.
      const m = /serving (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve(m[1]);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`server exited (${code}): ${out}`)));
    // Starting from the TypeScript sources on a loaded machine can take a while.
    setTimeout(() => reject(new Error(`server did not start listening: ${out}`)), 180_000).unref();
  });
  const deadline = Date.now() + (opts.readyMs ?? 60_000);
  while (Date.now() < deadline) {
    const ready = await fetch(`${url}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ready) return { url, child };
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`server at ${url} never became ready`);
}

/** Sends SIGKILL and resolves once the process is gone. */
export async function kill9(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await gone;
}
