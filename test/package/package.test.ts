import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/*
 * nearline as a user gets it: `npm pack`, then the tarball installed into a fresh project. npm resolves from its
 * cache first (--prefer-offline), so this runs without a network once the repository's own install has filled
 * the cache. Install scripts are skipped at install: they compile the hnsw addon and better-sqlite3 (minutes), and
 * importing nearline loads no native module, which is itself part of the point. One test then builds nearline's
 * own addon in the consumer (`npm rebuild nearline`) and uses it.
 */

const ROOT = path.resolve(import.meta.dirname, '../..');
const FIXTURES = path.join(import.meta.dirname, 'fixtures');
const BIN = (name: string) => path.join(ROOT, 'node_modules', '.bin', name);
/** Packages that must not load until a definition or a call uses them (TypeBox: option schemas, the server's routes). */
const LAZY = ['fastify', '@fastify/', 'onnxruntime-node', 'onnxruntime-common', '@huggingface/', 'ioredis', '@qdrant/', '@sinclair/typebox', 'pg/', 'pg-'];

let work: string;
let consumer: string;
let tarball: string;
let installLog: string;

const run = (cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> => {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, NEARLINE_FROM_SOURCE: '', ...env }, timeout: 240_000 });
  if (r.error) throw r.error;
  return r;
};
const ok = (r: SpawnSyncReturns<string>) => {
  expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  return r;
};

beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'nearline-package-'));
  // `npm pack` runs `prepare`, which builds dist/ from the sources under test.
  const packed = ok(run('npm', ['pack', '--json', '--pack-destination', work], ROOT));
  tarball = path.join(work, (JSON.parse(packed.stdout) as Array<{ filename: string }>)[0].filename);
  consumer = path.join(work, 'consumer');
  mkdirSync(consumer);
  writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }));
  const installed = ok(run('npm', ['install', '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund', tarball], consumer));
  installLog = installed.stdout + installed.stderr;
}, 240_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Imports `entry` in a fresh `node` with the load recorder; returns every module URL resolved and the CJS modules required. */
function loadsOf(entry: string, cwd: string, then = ''): { esm: string[]; cjs: string[]; stdout: string } {
  const file = path.join(work, `loads-${Math.random().toString(36).slice(2)}.txt`);
  writeFileSync(file, '');
  const script = `const m = await import(${JSON.stringify(entry)});\n${then}\nconst { createRequire } = await import('node:module');\nconsole.log(JSON.stringify(Object.keys(createRequire(import.meta.url).cache)));`;
  const r = ok(
    run(process.execPath, ['--import', path.join(FIXTURES, 'record-loads.mjs'), '--input-type=module', '-e', script], cwd, { NEARLINE_LOADS_FILE: file }),
  );
  const lines = r.stdout.trim().split('\n');
  return {
    esm: readFileSync(file, 'utf8').split('\n').filter(Boolean),
    cjs: JSON.parse(lines.at(-1) ?? '[]') as string[],
    stdout: lines.slice(0, -1).join('\n'),
  };
}

const lazyLoaded = (urls: string[]) => urls.filter((u) => LAZY.some((p) => u.includes(`/node_modules/${p}`)));

describe('the packed package', () => {
  it('installs on Node 20 with no engine or config warnings and without optional peers', () => {
    expect(installLog).not.toMatch(/EBADENGINE|Unknown (project|env|user) config/);
    const installed = readdirSync(path.join(consumer, 'node_modules'));
    for (const peer of ['onnxruntime-node', 'ioredis', '@huggingface', '@qdrant', 'pg']) expect(installed).not.toContain(peer);
    expect(installed).toContain('fastify');
  });

  it('ships compiled JavaScript and declarations, no TypeScript sources', () => {
    const listing = ok(run('tar', ['-tzf', tarball], work)).stdout.split('\n');
    expect(listing).toContain('package/dist/index.js');
    expect(listing).toContain('package/dist/index.d.ts');
    expect(listing).toContain('package/dist/client/index.js');
    expect(listing).toContain('package/native/binding.gyp');
    expect(listing).toContain('package/ui/index.html');
    expect(listing.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
  });

  it('imports nearline, nearline/client and nearline/server from plain node', () => {
    const r = ok(
      run(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `const lib = await import('nearline'); const { Nearline } = await import('nearline/client'); const server = await import('nearline/server');
           console.log(typeof lib.openStore, typeof new Nearline({ url: 'http://x' }).nearest, typeof server.build);`,
        ],
        consumer,
      ),
    );
    expect(r.stdout.trim()).toBe('function function function');
  });

  it('names the package to install when a definition needs a missing optional peer', () => {
    const r = ok(
      run(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `const { createOnlineStore, createEmbeddingModel, openRegistry } = await import('nearline');
           for (const f of [() => createOnlineStore('redis', {}, { name: 'r', home: '.' }), () => createEmbeddingModel({ name: 'm', version: '1', runtime: 'onnx', path: '.' }), () => openRegistry('postgres://127.0.0.1/x').listFeatures()]) {
             try { await f(); console.log('loaded'); } catch (e) { console.log(e.code + ': ' + e.message); }
           }`,
        ],
        consumer,
      ),
    );
    expect(r.stdout.trim().split('\n')).toEqual([
      'NL_MISSING_PACKAGE: the redis provider needs the package ioredis, which is not installed: npm install ioredis',
      'NL_MISSING_PACKAGE: the onnx runtime needs the package onnxruntime-node, which is not installed: npm install onnxruntime-node @huggingface/tokenizers',
      'NL_MISSING_PACKAGE: a PostgreSQL registry (NEARLINE_REGISTRY=postgres://...) needs the package pg, which is not installed: npm install pg',
    ]);
  });

  it('compiles its hnsw addon from the shipped sources in the consumer, and an index works from the installed package', () => {
    // nearline's own install script (node-gyp over native/, hnswlib's headers from hnswlib-node); the other
    // packages' native builds are theirs, and the repository's own `npm ci` runs them.
    ok(run('npm', ['rebuild', 'nearline', '--foreground-scripts'], consumer));
    const home = path.join(work, 'hnsw-home');
    const r = ok(
      run(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `const { createVectorProvider } = await import('nearline');
           const p = await createVectorProvider('hnsw', {}, { name: 'local', home: ${JSON.stringify(home)} });
           await p.open();
           const c = await p.collection({ name: 'c', dims: 3, metric: 'l2', index: { M: 8, efConstruction: 50, ef: 20 }, metadataFields: [] });
           await c.upsert([{ id: 'near', vector: Float32Array.from([0, 0, 1]) }, { id: 'far', vector: Float32Array.from([5, 5, 5]) }]);
           await c.flush();
           const [hits] = await c.search([{ vector: Float32Array.from([0, 0, 0.5]), k: 2 }]);
           console.log(hits.map((h) => h.id).join(' '));
           await p.close();`,
        ],
        consumer,
      ),
    );
    expect(r.stdout.trim()).toBe('near far');
    expect(readdirSync(path.join(consumer, 'node_modules', 'nearline', 'native', 'build', 'Release'))).toContain('nearline_hnsw.node');
  }, 240_000);

  it('runs the installed nearline bin from compiled JavaScript', () => {
    const r = ok(run(path.join(consumer, 'node_modules', '.bin', 'nearline'), ['--help'], consumer));
    expect(r.stdout).toMatch(/^nearline — an embedding feature store/);
    expect(r.stdout).toContain('materialize');
  });

  it('type-checks a TypeScript consumer against the declarations', () => {
    copyFileSync(path.join(FIXTURES, 'consumer.ts'), path.join(consumer, 'consumer.ts'));
    writeFileSync(
      path.join(consumer, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'es2022',
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: ['node'],
          typeRoots: [path.join(ROOT, 'node_modules', '@types')],
        },
        files: ['consumer.ts'],
      }),
    );
    ok(run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], consumer));
    // The same file with one wrong type fails: the check is real.
    writeFileSync(
      path.join(consumer, 'consumer.ts'),
      readFileSync(path.join(FIXTURES, 'consumer.ts'), 'utf8').replace('k: 10, query: { text', "k: '10', query: { text"),
    );
    const bad = run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], consumer);
    expect(bad.status).not.toBe(0);
    expect(bad.stdout).toContain("Type 'string' is not assignable to type 'number'");
  });

  it('passes arethetypeswrong as an ESM-only package', () => {
    ok(run(BIN('attw'), [tarball, '--profile', 'esm-only'], work));
  });
});

describe('importing has no side effects', () => {
  it('nearline loads no server, model runtime or backend client, and writes nothing', () => {
    const cwd = mkdtempSync(path.join(work, 'cwd-'));
    const { esm, cjs } = loadsOf(path.join(ROOT, 'dist', 'index.js'), cwd);
    expect(esm.some((u) => u.endsWith('/dist/index.js'))).toBe(true);
    expect(lazyLoaded([...esm, ...cjs])).toEqual([]);
    expect(readdirSync(cwd)).toEqual([]);
  });

  it('opening a store and querying the registry still loads no server or runtime', () => {
    const cwd = mkdtempSync(path.join(work, 'cwd-'));
    const { esm, cjs, stdout } = loadsOf(
      path.join(ROOT, 'dist', 'index.js'),
      cwd,
      `const store = m.openStore({ home: '.' }); console.log((await store.registry.listFeatures()).length); await store.close();`,
    );
    expect(stdout).toBe('0');
    expect(cjs.some((f) => f.includes('/node_modules/better-sqlite3/'))).toBe(true);
    expect(lazyLoaded([...esm, ...cjs])).toEqual([]);
  });

  it('nearline/client loads only itself', () => {
    const { esm, cjs } = loadsOf(path.join(ROOT, 'dist', 'client', 'index.js'), work);
    expect(esm.filter((u) => !u.startsWith('node:') && !u.endsWith('/record-loads-hooks.mjs'))).toEqual([
      `file://${path.join(ROOT, 'dist', 'client', 'index.js')}`,
    ]);
    expect(cjs).toEqual([]);
  });

  it('nearline/server loads fastify (the control: the recorder sees lazy packages when they load)', () => {
    const { esm, cjs } = loadsOf(path.join(ROOT, 'dist', 'server', 'index.js'), work);
    expect(lazyLoaded([...esm, ...cjs]).some((u) => u.includes('/node_modules/fastify/'))).toBe(true);
  });
});
