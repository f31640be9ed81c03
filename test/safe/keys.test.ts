import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir, wordDefs, writeDefs, writeWords } from '../helpers/fixtures.ts';
import { cli } from './helpers.ts';

const BIN = path.resolve(import.meta.dirname, '../../bin/nearline.mjs');

/** `nearline serve --port 0` in its own process; resolves once it has announced itself and answers. */
async function serve(home: string): Promise<{ child: ChildProcess; address: string; exited: Promise<unknown> }> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--home', home], { cwd: home, stdio: 'ignore' });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const file = readdirSync(home).includes('run') ? readdirSync(path.join(home, 'run')).find((f) => f === `serve-${child.pid}.json`) : undefined;
    if (file) {
      const { address } = JSON.parse(readFileSync(path.join(home, 'run', file), 'utf8')) as { address: string };
      if ((await fetch(`${address}/healthz`).catch(() => undefined))?.ok) return { child, address, exited };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error('the server did not start');
}

function home() {
  const dir = tempDir();
  writeWords(dir, 50, 8);
  writeDefs(dir, wordDefs(8));
  expect(cli(dir, 'apply', 'defs.yaml').code).toBe(0);
  expect(cli(dir, 'materialize', 'word_vec@v1').code).toBe(0);
  return dir;
}

describe('the first API key while a server serves openly (regression: every client got 401 at once)', () => {
  it('keys create refuses without --yes, creating nothing; with --yes it warns and the server then answers 401', { timeout: 120_000 }, async () => {
    const dir = home();
    const server = await serve(dir);
    try {
      const body = JSON.stringify({ feature: 'word_vec', k: 2, query: { id: 'w1' } });
      const nearest = (headers: Record<string, string> = {}) =>
        fetch(`${server.address}/v1/nearest`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
      expect((await nearest()).status).toBe(200);
      const refused = cli(dir, 'keys', 'create', '--scope', 'admin');
      expect(refused.code).toBe(1);
      expect(refused.err).toContain('error NL_CONFIRMATION_REQUIRED: a server is serving this home with no API key at');
      expect(refused.err).toContain(`(pid ${server.child.pid})`);
      expect(refused.out).toBe('');
      expect((await nearest()).status).toBe(200);
      const created = cli(dir, 'keys', 'create', '--scope', 'admin', '--yes');
      expect(created.code).toBe(0);
      expect(created.err).toContain('warning: a server is serving this home with no API key');
      const key = created.out.trim();
      expect(key).toMatch(/^nl_/);
      let status = 200;
      for (let i = 0; i < 100 && status === 200; i++, await new Promise((r) => setTimeout(r, 50))) status = (await nearest()).status;
      expect(status).toBe(401);
      expect((await nearest({ authorization: `Bearer ${key}` })).status).toBe(200);
      // Once a key exists, more keys change nothing for clients: no confirmation.
      expect(cli(dir, 'keys', 'create', '--scope', 'serve').code).toBe(0);
    } finally {
      server.child.kill('SIGTERM');
      await server.exited;
    }
    expect(readdirSync(path.join(dir, 'run'))).toEqual([]);
  });

  it('is not fooled by a server that crashed (kill -9) and left its record behind', { timeout: 120_000 }, async () => {
    const dir = home();
    const server = await serve(dir);
    server.child.kill('SIGKILL');
    await server.exited;
    expect(readdirSync(path.join(dir, 'run'))).toEqual([`serve-${server.child.pid}.json`]);
    const r = cli(dir, 'keys', 'create', '--scope', 'admin');
    expect(r.code).toBe(0);
    expect(r.err).not.toContain('warning');
    expect(readdirSync(path.join(dir, 'run'))).toEqual([]);
  });
});
