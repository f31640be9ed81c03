import { describe, expect, it } from 'vitest';
import { isNearlineError } from '../../src/errors.ts';
import { Lane } from '../../src/server/limiter.ts';
import { filterConditions, isHeavy } from '../../src/server/routes/nearest.ts';

const gate = () => {
  let open!: () => void;
  const p = new Promise<void>((r) => (open = r));
  return { p, open };
};

describe('Lane', () => {
  it('runs at most `concurrency` tasks, queues the next in order, and refuses beyond the queue', async () => {
    const lane = new Lane('t', { concurrency: 2, queue: 2 });
    const g = gate();
    const order: number[] = [];
    const tasks = [0, 1, 2, 3].map((i) =>
      lane.run(async () => {
        order.push(i);
        await g.p;
        return i;
      }),
    );
    await new Promise((r) => setTimeout(r, 5));
    expect([lane.active, lane.queued]).toEqual([2, 2]);
    expect(order).toEqual([0, 1]);
    const refused = await lane.run(async () => 9).catch((e) => e);
    expect(isNearlineError(refused, 'NL_OVERLOADED')).toBe(true);
    expect(lane.rejected).toBe(1);
    g.open();
    expect(await Promise.all(tasks)).toEqual([0, 1, 2, 3]);
    expect(order).toEqual([0, 1, 2, 3]);
    expect([lane.active, lane.queued]).toEqual([0, 0]);
  });

  it('frees its slot when a task throws', async () => {
    const lane = new Lane('t', { concurrency: 1, queue: 0 });
    await expect(lane.run(async () => Promise.reject(new Error('x')))).rejects.toThrow('x');
    expect(await lane.run(async () => 7)).toBe(7);
  });

  it('paces itself to its share of the time while the lane it yields to is busy, and not otherwise', async () => {
    const cheap = new Lane('cheap', { concurrency: 10, queue: 10 });
    const heavy = new Lane('heavy', { concurrency: 1, queue: 10, share: 0.5, maxPauseMs: 1000 }, cheap);
    const spans: Array<{ start: number; end: number }> = [];
    const work = () =>
      heavy.run(async () => {
        const start = performance.now();
        await new Promise((r) => setTimeout(r, 40));
        spans.push({ start, end: performance.now() });
      });
    // The gap before a task compared with the run before it: share 0.5 asks for a pause as long as the run.
    const gapOverRun = () => {
      const [a, b] = spans.splice(0);
      return (b.start - a.end) / (a.end - a.start);
    };

    await Promise.all([work(), work()]);
    expect(gapOverRun()).toBeLessThan(0.5);

    const busy = gate();
    const cheapTask = cheap.run(() => busy.p);
    await Promise.all([work(), work()]);
    expect(gapOverRun()).toBeGreaterThanOrEqual(0.95);
    busy.open();
    await cheapTask;
  });
});

describe('which lane a search takes', () => {
  const eq = (value: number) => ({ field: 'bucket', op: 'eq', value });
  const one = { k: 10, queries: [{ id: 'w1' }] };

  it('counts the conditions a filter evaluates per row', () => {
    expect(filterConditions(eq(1))).toBe(1);
    expect(filterConditions({ field: 'bucket', op: 'in', value: [1, 2, 3] })).toBe(1);
    expect(filterConditions({ or: Array.from({ length: 40 }, (_, i) => eq(i)) })).toBe(40);
    expect(filterConditions({ and: [eq(1), { not: { or: [eq(2), eq(3)] } }] })).toBe(3);
  });

  it('cheap: plain searches, and filters whose evaluation over the index is small', () => {
    expect(isHeavy(one, 0)).toBe(false);
    expect(isHeavy({ ...one, k: 100, ef: 400 }, 0)).toBe(false);
    expect(isHeavy({ k: 10, queries: Array.from({ length: 32 }, () => ({ id: 'w1' })) }, 0)).toBe(false);
    expect(isHeavy({ ...one, filter: eq(1) }, 50_000)).toBe(false);
  });

  it('heavy: wide walks, big batches, costly filters, MMR and text', () => {
    expect(isHeavy({ ...one, k: 101 }, 0)).toBe(true);
    expect(isHeavy({ ...one, ef: 401 }, 0)).toBe(true);
    expect(isHeavy({ k: 10, queries: Array.from({ length: 65 }, () => ({ id: 'w1' })) }, 0)).toBe(true);
    expect(isHeavy({ ...one, filter: eq(1) }, 1_000_000)).toBe(true);
    expect(isHeavy({ ...one, filter: { or: Array.from({ length: 40 }, (_, i) => eq(i)) } }, 50_000)).toBe(true);
    expect(isHeavy({ ...one, diversity: { lambda: 0.5 } }, 0)).toBe(true);
    expect(isHeavy({ k: 10, queries: [{ text: 'hello' }] }, 0)).toBe(true);
  });

  it('a text query whose model embeds in worker threads is cheap', () => {
    expect(isHeavy({ k: 10, queries: [{ text: 'hello' }] }, 0, false)).toBe(false);
    expect(isHeavy({ k: 10, queries: [{ text: 'hello' }], diversity: { lambda: 0.5 } }, 0, false)).toBe(true);
  });
});
