import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listen } from '../../src/server/server.ts';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { makeHome } from './fixture.ts';

let home: string;
let cleanup: () => void;

beforeAll(async () => {
  ({ home, cleanup } = await makeHome());
});

afterAll(() => cleanup?.());

function capture() {
  const lines: Array<{ level: number; msg: string }> = [];
  return { lines, logger: { level: 'info', stream: { write: (s: string) => void lines.push(JSON.parse(s)) } } };
}

describe('listen', () => {
  it('without API keys binds to 127.0.0.1 only and says so in one line; serves over a socket; closes', async () => {
    const log = capture();
    const server = await listen({ home, port: 0, logger: log.logger });
    try {
      expect(server.address).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const warnings = log.lines.filter((l) => /no API key/.test(l.msg));
      expect(warnings).toHaveLength(1);
      expect(warnings[0].msg).toMatch(/127\.0\.0\.1 only/);
      const res = await fetch(`${server.address}/v1/nearest`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ feature: 'item_vec', k: 2, query: { id: 'i1' } }),
      });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { hits: unknown[] }).hits).toHaveLength(2);
    } finally {
      await server.close();
    }
    await expect(fetch(`${server.address}/healthz`)).rejects.toThrow();
  });

  it('an explicit host is honoured, and with a key created the open-API warning is gone', async () => {
    const store = FeatureStore.open({ home });
    const { key } = await store.registry.createKey('serve', null);
    await store.close();
    const log = capture();
    const server = await listen({ home, port: 0, host: '127.0.0.1', logger: log.logger });
    try {
      expect(log.lines.filter((l) => /no API key/.test(l.msg))).toEqual([]);
      const body = JSON.stringify({ feature: 'item_vec', k: 2, query: { id: 'i1' } });
      const headers = { 'content-type': 'application/json' };
      expect((await fetch(`${server.address}/v1/nearest`, { method: 'POST', headers, body })).status).toBe(401);
      expect((await fetch(`${server.address}/v1/nearest`, { method: 'POST', headers: { ...headers, authorization: `Bearer ${key}` }, body })).status).toBe(200);
    } finally {
      await server.close();
    }
  });
});
