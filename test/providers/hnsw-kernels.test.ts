import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { nativeAddon } from '../../src/providers/vector/hnsw/native.ts';
import { mulberry32 } from './vector.suite.ts';

const addon = nativeAddon('test');
const { supported } = addon.kernels();
// Odd sizes on purpose: every kernel has a main loop, a half-width step and a tail.
const DIMS = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 100, 127, 384, 768, 1001];

function random(rand: () => number, n: number, scale: number): Float32Array {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = (rand() * 2 - 1) * scale;
  return v;
}

/** Float64 reference and the size of the terms summed, which bounds float32 rounding. */
function reference(metric: 'l2' | 'ip', a: Float32Array, b: Float32Array): { value: number; magnitude: number } {
  let s = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const t = metric === 'l2' ? (a[i] - b[i]) ** 2 : a[i] * b[i];
    s += t;
    m += Math.abs(t);
  }
  return { value: metric === 'l2' ? s : 1 - s, magnitude: m + (metric === 'ip' ? 1 : 0) };
}

/**
 * A bound on how far a distance between int8 codes is from the exact one: each code is off by at most half a
 * step (max|v| / 254), and a term a_i b_i (or (a_i - b_i)^2) moves by at most the step times what multiplies it.
 */
function quantizationError(metric: 'l2' | 'ip', a: Float32Array, b: Float32Array): number {
  const max = (v: Float32Array) => v.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  const ea = max(a) / 254;
  const eb = max(b) / 254;
  let bound = 0;
  for (let i = 0; i < a.length; i++) {
    if (metric === 'ip') bound += Math.abs(a[i]) * eb + Math.abs(b[i]) * ea + ea * eb;
    else bound += 2 * Math.abs(a[i] - b[i]) * (ea + eb) + (ea + eb) ** 2;
  }
  // Plus float32 rounding of the scales and the final combination.
  return bound * 1.01 + 1e-4 * (metric === 'ip' ? 1 : 0) + 1e-5 * a.length * (max(a) + max(b)) ** 2;
}

describe('distance kernels', () => {
  it('the CPU supports at least the scalar kernel, and the active one is among those it supports', () => {
    expect(supported).toContain('scalar');
    if (process.arch === 'x64') expect(supported).toContain('sse');
    if (!process.env.NEARLINE_SIMD) expect(addon.kernels().active).toBe(supported[0]);
  });

  for (const kernel of supported) {
    it(`${kernel} agrees with the scalar kernel and a float64 reference, for L2 and inner product, at every size`, () => {
      const rand = mulberry32(42);
      for (const dims of DIMS) {
        for (let trial = 0; trial < 8; trial++) {
          // Unaligned on purpose: a view starting one float into its buffer.
          const a = random(rand, dims + 1, trial % 2 ? 100 : 1).subarray(1);
          const b = random(rand, dims + 1, trial % 2 ? 100 : 1).subarray(1);
          for (const metric of ['l2', 'ip'] as const) {
            const got = addon.distance(kernel, metric, a, b);
            const scalar = addon.distance('scalar', metric, a, b);
            const ref = reference(metric, a, b);
            const tolerance = 1e-5 * ref.magnitude;
            expect(Math.abs(got - scalar), `${kernel} ${metric} dims ${dims}`).toBeLessThanOrEqual(tolerance);
            expect(Math.abs(got - ref.value), `${kernel} ${metric} dims ${dims} vs float64`).toBeLessThanOrEqual(tolerance);
          }
        }
      }
      // Identical vectors: exactly zero L2 whatever the order of summation.
      const v = random(rand, 100, 1);
      expect(addon.distance(kernel, 'l2', v, v)).toBe(0);
    });
  }

  for (const kernel of supported) {
    it(`${kernel} int8 gives the scalar int8 kernel's answer exactly, within the quantization error of float64, at every size`, () => {
      const rand = mulberry32(7);
      for (const dims of DIMS) {
        for (let trial = 0; trial < 8; trial++) {
          // Odd byte offsets too: codes are read wherever the graph puts them.
          const a = random(rand, dims + 1, trial % 2 ? 100 : 1).subarray(1);
          const b = random(rand, dims + 1, trial % 2 ? 100 : 1).subarray(1);
          for (const metric of ['l2', 'ip'] as const) {
            const got = addon.distance(kernel, metric, a, b, true);
            // Integer dot products: no rounding to differ in.
            expect(got, `${kernel} int8 ${metric} dims ${dims}`).toBe(addon.distance('scalar', metric, a, b, true));
            const ref = reference(metric, a, b);
            expect(Math.abs(got - ref.value), `${kernel} int8 ${metric} dims ${dims} vs float64`).toBeLessThanOrEqual(quantizationError(metric, a, b));
          }
        }
      }
      const v = random(rand, 384, 1);
      expect(addon.distance(kernel, 'l2', v, v, true)).toBe(0);
    });
  }

  const addonPath = fileURLToPath(new URL('../../native/build/Release/nearline_hnsw.node', import.meta.url));
  const inChild = (simd: string, script: string) =>
    execFileSync(process.execPath, ['-e', `const a = require(${JSON.stringify(addonPath)}); ${script}`], {
      env: { ...process.env, NEARLINE_SIMD: simd },
      encoding: 'utf8',
    }).trim();

  it('NEARLINE_SIMD forces a kernel the CPU supports, and an index built under it (f32 or int8) searches correctly', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nearline-kernels-'));
    try {
      for (const kernel of supported) {
        for (const int8 of ['', `, { vectors: ${JSON.stringify(join(dir, `${kernel}.f32`))} }`]) {
          const out = inChild(
            kernel,
            `const ix = new a.Index('l2', 5, 16, 8, 50, 1${int8});
             ix.add(Float32Array.from([0,0,0,0,0, 1,1,1,1,1, 5,5,5,5,5]), Uint32Array.from([0,1,2]), 1)
               .then(() => { const f = ix.searchSync(Float32Array.from([0.9,1,1,1,1.1]), 2, 10); console.log(a.kernels().active, Array.from(f.labels).join(',')); });`,
          );
          expect(out, int8 ? 'int8' : 'f32').toBe(`${kernel} 1,0`);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('NEARLINE_SIMD naming an unknown kernel makes indexes refuse to open with the reason', () => {
    const out = inChild(
      'avx9000',
      `console.log(JSON.stringify(a.kernels())); try { new a.Index('l2', 4, 16, 8, 50, 1); console.log('opened'); } catch (e) { console.log(e.message); }`,
    );
    const [kernels, opened] = out.split('\n');
    expect(JSON.parse(kernels)).toMatchObject({ active: null, error: expect.stringContaining('NEARLINE_SIMD=avx9000') });
    expect(opened).toContain('NEARLINE_SIMD=avx9000');
  });
});
