import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isNearlineError } from '../../src/errors.ts';
import type { OnlineStore } from '../../src/providers/online/types.ts';
import type { OnlineValue } from '../../src/types.ts';

export interface OnlineStoreFixture {
  store: OnlineStore;
  cleanup?: () => Promise<void>;
}

/** The contract every online backend passes; run it once per backend. */
export function onlineStoreSuite(label: string, makeStore: () => Promise<OnlineStoreFixture>): void {
  describe(`online store conformance: ${label}`, () => {
    let fixture: OnlineStoreFixture;
    let store: OnlineStore;
    let n = 0;
    // Every test writes its own feature keys, so tests stay independent on a shared backend.
    const key = (name: string, variant = 'v1') => `${name}_${n}@${variant}`;

    beforeAll(async () => {
      fixture = await makeStore();
      store = fixture.store;
      await store.open();
    });

    afterAll(async () => {
      await store?.close();
      await fixture?.cleanup?.();
    });

    const next = () => {
      n++;
    };

    it('declares its kind and name', () => {
      expect(typeof store.kind).toBe('string');
      expect(store.kind.length).toBeGreaterThan(0);
      expect(typeof store.name).toBe('string');
    });

    it('reads many ids x many features in request order, absent values as null', async () => {
      next();
      const a = key('a');
      const b = key('b');
      const c = key('c');
      await store.put(a, [
        ['u1', 1],
        ['u2', 2],
        ['u3', 3],
      ]);
      await store.put(b, [
        ['u2', 'two'],
        ['u3', 'three'],
      ]);
      await store.put(c, [['u1', vec([1, 2, 3])]]);
      const got = await store.get(['u3', 'missing', 'u1', 'u2', 'u1'], [c, a, key('never_written'), b]);
      expect(got).toEqual([
        [null, 3, null, 'three'],
        [null, null, null, null],
        [vec([1, 2, 3]), 1, null, null],
        [null, 2, null, 'two'],
        [vec([1, 2, 3]), 1, null, null],
      ]);
      expect(got[2][0]).toBeInstanceOf(Float32Array);
    });

    it('returns an empty result for empty ids and rows of nulls for no features', async () => {
      expect(await store.get([], [key('a')])).toEqual([]);
      expect(await store.get(['x', 'y'], [])).toEqual([[], []]);
    });

    it('overwrites values, including with a different type', async () => {
      next();
      const f = key('f');
      await store.put(f, [
        ['u1', 1],
        ['u2', 'old'],
      ]);
      await store.put(f, [
        ['u1', 'now a string'],
        ['u2', vec([0.5])],
      ]);
      expect(await store.get(['u1', 'u2'], [f])).toEqual([['now a string'], [vec([0.5])]]);
      expect(await store.count(f)).toBe(2);
    });

    it('deletes an id when its value is null, and the last row for an id wins', async () => {
      next();
      const f = key('f');
      await store.put(f, [
        ['u1', 1],
        ['u2', 2],
        ['u3', 3],
      ]);
      await store.put(f, [
        ['u1', null],
        ['u3', 30],
        ['u3', null],
        ['u2', null],
        ['u2', 22],
        ['nobody', null],
      ]);
      expect(await store.get(['u1', 'u2', 'u3', 'nobody'], [f])).toEqual([[null], [22], [null], [null]]);
      expect(await store.count(f)).toBe(1);
    });

    it('round-trips vectors bit-exactly as Float32Array', async () => {
      next();
      const f = key('vec');
      const special = new Float32Array([
        0,
        -0,
        1,
        -1,
        Math.PI,
        1e-45 /* smallest subnormal */,
        3.4028234663852886e38,
        -3.4028234663852886e38,
        1.17549435e-38,
        0.1,
      ]);
      const random = new Float32Array(768);
      for (let i = 0; i < random.length; i++) random[i] = (Math.random() - 0.5) * 10 ** ((i % 20) - 10);
      // A view into a larger buffer must store only its own elements.
      const backing = new Float32Array([9, 9, 7, 8, 9, 9]);
      const view = backing.subarray(2, 4);
      await store.put(f, [
        ['special', special],
        ['random', random],
        ['view', view],
      ]);
      const [[s], [r], [v]] = await store.get(['special', 'random', 'view'], [f]);
      for (const [got, want] of [
        [s, special],
        [r, random],
        [v, new Float32Array([7, 8])],
      ] as const) {
        expect(got).toBeInstanceOf(Float32Array);
        expect(bits(got as Float32Array)).toEqual(bits(want));
      }
      // Returned vectors are the caller's to keep: mutating one affects neither its neighbours nor a later read.
      (s as Float32Array).fill(42);
      expect(bits(r as Float32Array)).toEqual(bits(random));
      expect(bits(v as Float32Array)).toEqual(bits(new Float32Array([7, 8])));
      const [[again]] = await store.get(['special'], [f]);
      expect(bits(again as Float32Array)).toEqual(bits(special));
    });

    it('round-trips scalar types exactly', async () => {
      next();
      const f = key('scalars');
      const values: Array<[string, OnlineValue]> = [
        ['true', true],
        ['false', false],
        ['zero', 0],
        ['negzero', -0],
        ['empty', ''],
        ['neg', -17.25],
        ['maxsafe', Number.MAX_SAFE_INTEGER],
        ['minsafe', Number.MIN_SAFE_INTEGER],
        ['big', 1e300],
        ['tiny', 5e-324],
        ['fraction', 0.1 + 0.2],
        ['numeric string', '42'],
        ['bool string', 'true'],
        ['unicode', 'naïve — 日本語 🚀'],
        ['nul byte', 'a\u0000b'],
        ['json-ish', '{"a":[1,2]}'],
      ];
      await store.put(f, values);
      const got = await store.get(
        values.map(([id]) => id),
        [f],
      );
      values.forEach(([id, want], i) => {
        const value = got[i][0];
        expect(typeof value, id).toBe(typeof want);
        expect(Object.is(value, want), `${id}: ${String(value)} !== ${String(want)}`).toBe(true);
      });
    });

    it('keeps variants of the same feature apart', async () => {
      next();
      const v1 = key('item', 'v1');
      const v2 = key('item', 'v2');
      await store.put(v1, [
        ['i1', 'first'],
        ['i2', 1],
      ]);
      await store.put(v2, [['i1', 'second']]);
      expect(await store.get(['i1', 'i2'], [v1, v2])).toEqual([
        ['first', 'second'],
        [1, null],
      ]);
      expect(await store.count(v1)).toBe(2);
      expect(await store.count(v2)).toBe(1);
      await store.deleteFeature(v2);
      expect(await store.get(['i1', 'i2'], [v1, v2])).toEqual([
        ['first', null],
        [1, null],
      ]);
    });

    it('deleteFeature drops every value of that key only', async () => {
      next();
      const gone = key('gone');
      const kept = key('kept');
      await store.put(gone, [
        ['a', 1],
        ['b', vec([1])],
      ]);
      await store.put(kept, [['a', 2]]);
      await store.deleteFeature(gone);
      expect(await store.count(gone)).toBe(0);
      expect(await store.get(['a', 'b'], [gone, kept])).toEqual([
        [null, 2],
        [null, null],
      ]);
      // Deleting an unknown feature key is not an error.
      await store.deleteFeature(key('never_written'));
      // And the key is usable again afterwards.
      await store.put(gone, [['c', true]]);
      expect(await store.get(['c'], [gone])).toEqual([[true]]);
    });

    it('counts ids holding a value', async () => {
      next();
      const f = key('counted');
      expect(await store.count(f)).toBe(0);
      await store.put(f, [
        ['a', 1],
        ['b', 2],
        ['a', 3],
      ]);
      expect(await store.count(f)).toBe(2);
      await store.put(f, [['c', 'x']]);
      expect(await store.count(f)).toBe(3);
      await store.put(f, [['b', null]]);
      expect(await store.count(f)).toBe(2);
    });

    describe('rejects bad input with a coded error and writes nothing', () => {
      const bad: Array<[string, unknown, string]> = [
        ['NaN', Number.NaN, 'NL_BAD_REQUEST'],
        ['Infinity', Number.POSITIVE_INFINITY, 'NL_BAD_REQUEST'],
        ['undefined', undefined, 'NL_BAD_REQUEST'],
        ['object', { a: 1 }, 'NL_BAD_REQUEST'],
        ['plain array', [1, 2, 3], 'NL_BAD_REQUEST'],
        ['Float64Array', new Float64Array([1]), 'NL_BAD_REQUEST'],
        ['bigint', 10n, 'NL_BAD_REQUEST'],
        ['vector with NaN', new Float32Array([1, Number.NaN]), 'NL_BAD_VECTOR'],
        ['empty vector', new Float32Array(0), 'NL_BAD_VECTOR'],
      ];
      for (const [what, value, code] of bad) {
        it(`${what} -> ${code}`, async () => {
          next();
          const f = key('bad');
          await store.put(f, [['keep', 'before']]);
          // The bad row comes last: nothing before it may be written either.
          const rows = [
            ['keep', 'after'],
            ['new', 1],
            ['bad', value],
          ] as Array<[string, OnlineValue]>;
          const err = await store.put(f, rows).then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(isNearlineError(err), `expected a NearlineError, got ${String(err)}`).toBe(true);
          expect((err as { code: string }).code).toBe(code);
          expect(await store.get(['keep', 'new', 'bad'], [f])).toEqual([['before'], [null], [null]]);
          expect(await store.count(f)).toBe(1);
        });
      }

      it('bad ids and feature keys', async () => {
        next();
        const f = key('bad');
        for (const rows of [[['', 1]], [[1, 1]], [['a']], ['a'], 'rows'] as unknown[]) {
          await expectCode(store.put(f, rows as Array<[string, OnlineValue]>), 'NL_BAD_REQUEST');
        }
        await expectCode(store.put('', [['a', 1]]), 'NL_BAD_REQUEST');
        await expectCode(store.get([1 as unknown as string], [f]), 'NL_BAD_REQUEST');
        await expectCode(store.get(['a'], [undefined as unknown as string]), 'NL_BAD_REQUEST');
        await expectCode(store.count(''), 'NL_BAD_REQUEST');
        await expectCode(store.deleteFeature(''), 'NL_BAD_REQUEST');
        expect(await store.count(f)).toBe(0);
      });
    });

    it('handles large batches: 10k ids x 3 features', async () => {
      next();
      const ids = Array.from({ length: 10_000 }, (_, i) => `id-${i}`);
      const [num, str, v] = [key('num'), key('str'), key('vec')];
      await store.put(
        num,
        ids.map((id, i) => [id, i * 0.5]),
      );
      await store.put(
        str,
        ids.map((id, i) => [id, `s${i}`]),
      );
      await store.put(
        v,
        ids.filter((_, i) => i % 2 === 0).map((id, i) => [id, vec([i, -i, i / 3])]),
      );
      expect(await store.count(num)).toBe(10_000);
      expect(await store.count(v)).toBe(5_000);
      const wanted = [...ids].reverse();
      const got = await store.get(wanted, [num, str, v]);
      expect(got).toHaveLength(10_000);
      for (let k = 0; k < wanted.length; k++) {
        const i = 9_999 - k;
        const row = got[k];
        expect(row[0]).toBe(i * 0.5);
        expect(row[1]).toBe(`s${i}`);
        if (i % 2 === 0) expect(bits(row[2] as Float32Array)).toEqual(bits(vec([i / 2, -i / 2, i / 6])));
        else expect(row[2]).toBeNull();
      }
      await store.put(
        num,
        ids.map((id) => [id, null]),
      );
      expect(await store.count(num)).toBe(0);
    });
  });
}

function vec(values: number[]): Float32Array {
  return new Float32Array(values);
}

/** Bit patterns, so -0 vs 0 and NaN payloads would show up as differences. */
function bits(v: Float32Array): number[] {
  return Array.from(new Uint32Array(v.buffer, v.byteOffset, v.length));
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isNearlineError(err), `expected ${code}, got ${String(err)}`).toBe(true);
  expect((err as { code: string }).code).toBe(code);
}
