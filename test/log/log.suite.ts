import { expect } from 'vitest';
import type { Log, LogEntry } from '../../src/log/types.ts';

/** Every entry past `after`, read back. */
export async function all(log: Log, after = 0): Promise<LogEntry[]> {
  const out: LogEntry[] = [];
  for await (const e of log.read(after)) out.push(e);
  return out;
}

/** What every log does: contiguous offsets in append order, read back after `open` is called again. */
export async function checkAppendOrder(open: () => Promise<Log>): Promise<void> {
  const log = await open();
  expect(log.end()).toBe(0);
  const a = await log.append([
    { key: 'x', data: { v: 1 } },
    { key: 'y', data: { v: 2 } },
  ]);
  const b = await log.append([{ key: 'x', data: { v: 3 } }]);
  expect([a, b, log.end()]).toEqual([1, 3, 3]);
  expect((await all(log, 1)).map((e) => [e.offset, e.key, e.data])).toEqual([
    [2, 'y', { v: 2 }],
    [3, 'x', { v: 3 }],
  ]);
  await log.close();
  const again = await open();
  expect(again.end()).toBe(3);
  expect(await again.append([{ key: 'z', data: null }])).toBe(4);
  expect((await all(again)).map((e) => e.key)).toEqual(['x', 'y', 'x', 'z']);
  await again.close();
}
