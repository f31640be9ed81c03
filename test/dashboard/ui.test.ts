import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/server/app.ts';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { seeded, tempDir, writeDefs } from '../helpers/fixtures.ts';

const BIN = path.resolve(import.meta.dirname, '../../bin/nearline.mjs');
const ARTIFACTS = path.resolve(import.meta.dirname, '../artifacts');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const DIMS = 24;
const CATEGORIES = ['books', 'music', 'garden'];

function cli(home: string, ...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args, '--home', home], { encoding: 'utf8', cwd: home });
  if (r.status !== 0) throw new Error(`nearline ${args.join(' ')}: ${r.stderr}`);
  return r;
}

/** Items in three clusters, one per category, so the map has visible structure and filters matter. */
function writeItems(home: string, n: number): void {
  const rnd = seeded(7);
  const centres = CATEGORIES.map(() => Array.from({ length: DIMS }, () => rnd() * 2 - 1));
  const rows = Array.from({ length: n }, (_, i) => {
    const c = i % CATEGORIES.length;
    return { id: `i${i}`, vec: centres[c].map((x) => x + (rnd() - 0.5) * 0.9), category: CATEGORIES[c], price: Math.round(rnd() * 10000) / 100 };
  });
  writeFileSync(path.join(home, 'items.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
}

const defs = (variants: string[]) => ({
  providers: [
    { name: 'local', kind: 'hnsw' },
    { name: 'kv', kind: 'sqlite' },
  ],
  entities: [{ name: 'item', key: 'id' }],
  sources: [{ name: 'items', variant: 'v1', kind: 'jsonl', path: 'items.jsonl' }],
  features: [
    ...variants.map((variant) => ({
      name: 'item_vec',
      variant,
      entity: 'item',
      source: 'items@v1',
      kind: 'embedding',
      vector: { column: 'vec' },
      dims: DIMS,
      metric: 'cosine',
      provider: 'local',
      metadata: ['category', 'price'],
    })),
    { name: 'item_price', variant: 'v1', entity: 'item', source: 'items@v1', kind: 'scalar', column: 'price', type: 'float', provider: 'kv' },
  ],
  aliases: [{ feature: 'item_vec', name: 'prod', variant: 'v1' }],
});

describe('the dashboard in a real browser', { timeout: 60_000 }, () => {
  let home: string;
  let store: FeatureStore;
  let app: FastifyInstance;
  let base: string;
  let key: string;
  let browser: Browser;
  let page: Page;
  const problems: string[] = [];

  const api = async (url: string, body?: unknown) => {
    const res = await fetch(`${base}${url}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    expect(res.status).toBe(200);
    return res.json();
  };
  const shot = (name: string) => page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: .ci/run installs Debian's chromium (apt-get install -y chromium)`);
    mkdirSync(ARTIFACTS, { recursive: true });
    home = tempDir();
    writeItems(home, 1500);
    writeDefs(home, defs(['v1']));
    cli(home, 'apply', 'defs.yaml');
    cli(home, 'materialize', 'item_vec@v1');
    cli(home, 'materialize', 'item_price@v1');
    writeDefs(home, { ...defs(['v1', 'v2']), aliases: [] }, 'v2.yaml');
    cli(home, 'apply', 'v2.yaml');
    cli(home, 'materialize', 'item_vec@v2');
    cli(home, 'alias', 'set', 'item_vec', 'prod', 'v2');
    cli(home, 'alias', 'set', 'item_vec', 'prod', 'v1');
    key = cli(home, 'keys', 'create', '--scope', 'admin').stdout.trim();

    store = FeatureStore.open({ home });
    app = await build({ store, series: { intervalSeconds: 0.5 } });
    base = await app.listen({ port: 0, host: '127.0.0.1' });
    // Some traffic, so the charts and the recent-writes health have something to show.
    for (let i = 0; i < 30; i++) await api('/v1/nearest', { feature: 'item_vec', k: 5, query: { id: `i${i}` } });
    // v2 receives writes half again as long as its baseline: its norm drifts.
    const rnd = seeded(9);
    const upserts = Array.from({ length: 150 }, (_, i) => ({
      id: `new${i}`,
      vector: Array.from({ length: DIMS }, () => (rnd() * 2 - 1) * 1.5),
      metadata: { category: 'books', price: 1 },
    }));
    const put = await fetch(`${base}/v1/features/item_vec@v2/vectors`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ upserts }),
    });
    expect(put.status).toBe(200);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
    page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
    page.on('response', (r) => r.status() >= 400 && problems.push(`HTTP ${r.status()}: ${r.url()}`));
  });

  afterEach(() => {
    expect(problems).toEqual([]);
  });

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await store?.close();
  });

  it('asks for the key once, then lists every variant with its status, rows and health', async () => {
    await page.goto(`${base}/ui`);
    await page.fill('#api-key', key);
    await page.click('button[type=submit]');
    await page.waitForSelector('#features tbody tr');
    expect(await page.evaluate(() => sessionStorage.getItem('nearline.apiKey'))).toBe(key);
    const rows = await page.$$eval('#features tbody tr', (trs) => trs.map((tr) => Array.from(tr.querySelectorAll('td')).map((td) => td.textContent!.trim())));
    expect(rows.map((r) => r[0])).toEqual(['item_price@v1', 'item_vec@v1prod', 'item_vec@v2']);
    expect(rows[2][2]).toBe('live');
    expect(rows[2][8]).toBe('drifting');
    expect(rows[1]).toEqual(['item_vec@v1prod', 'embedding', 'live', '1,500', 'column vec', 'cosine, 24 d', 'items@v1', 'local', 'no writes yet']);
    await shot('features');
    // Reloading keeps the key for this tab: no second prompt.
    await page.reload();
    await page.waitForSelector('#features tbody tr');
  });

  it('a variant: lineage graph, definition, health, and alias history with who and when', async () => {
    await page.click('text=item_vec@v1');
    await page.waitForSelector('#alias-history tbody tr');
    const nodes = await page.$$eval('.lineage .node .name', (els) => els.map((e) => e.textContent));
    expect(nodes).toEqual(['items@v1', 'column vec', 'item_vec@v1', 'local']);
    const moves = await page.$$eval('#alias-history tbody tr', (trs) =>
      trs.map((tr) =>
        Array.from(tr.querySelectorAll('td'))
          .slice(1)
          .map((td) => td.textContent),
      ),
    );
    expect(moves).toEqual([
      ['item_vec@prod', 'v2 → v1', expect.stringMatching(/^user:/)],
      ['item_vec@prod', 'v1 → v2', expect.stringMatching(/^user:/)],
      ['item_vec@prod', '(new) → v1', expect.stringMatching(/^user:/)],
    ]);
    await page.selectOption('#compare', 'item_vec@v2');
    await page.waitForSelector('text=item_vec@v1 vs item_vec@v2');
    await shot('feature');
    await page.goto(`${base}/ui/#/feature/item_vec@v2`);
    await page.waitForSelector('.card .badge.drifting');
    expect(await page.textContent('.card:has(.badge.drifting) p')).toMatch(/mean norm \+\d+\.\d%/);
    await shot('feature-drifting');
  });

  it('the playground shows the same hits as the API, with joined features, and copies the call', async () => {
    await page.goto(`${base}/ui/#/playground?feature=item_vec@prod`);
    await page.waitForSelector('#pg-form');
    await page.fill('#pg-input', 'i4');
    await page.fill('#pg-k', '7');
    await page.click('#pg-add-cond');
    await page.selectOption('.cond select[aria-label=field]', 'category');
    await page.selectOption('.cond select[aria-label=operator]', 'in');
    await page.fill('.cond input[aria-label=value]', 'music,garden');
    await page.check('input[value="item_price@v1"]');
    await page.click('#pg-run');
    await page.waitForSelector('#hits tbody tr');
    const shown = await page.$$eval('#hits tbody tr', (trs) =>
      trs.map((tr) => ({ id: tr.dataset.id, score: Number(tr.dataset.score), price: tr.querySelectorAll('td')[3].textContent })),
    );
    const truth = await api('/v1/nearest', {
      feature: 'item_vec@prod',
      k: 7,
      query: { id: 'i4' },
      filter: { field: 'category', op: 'in', value: ['music', 'garden'] },
      include: { features: ['item_price@v1'] },
    });
    expect(shown.map((s) => s.id)).toEqual(truth.hits.map((x: { id: string }) => x.id));
    expect(shown.map((s) => s.score)).toEqual(truth.hits.map((x: { score: number }) => x.score));
    expect(shown.map((s) => s.price)).toEqual(
      truth.hits.map((x: { features: Record<string, number> }) => String(Number(x.features['item_price@v1'].toFixed(4)))),
    );
    expect(shown).toHaveLength(7);

    await page.click('#copy-curl');
    const curl = await page.textContent('#snippet');
    expect(curl).toContain(`${base}/v1/nearest`);
    expect(curl).toContain('authorization: Bearer $NEARLINE_KEY');
    expect(curl).not.toContain(key);
    const sent = JSON.parse(/-d '(.*)'$/s.exec(curl!)![1]);
    expect(sent).toEqual({
      feature: 'item_vec@prod',
      k: 7,
      query: { id: 'i4' },
      filter: { field: 'category', op: 'in', value: ['music', 'garden'] },
      include: { features: ['item_price@v1'] },
    });
    await page.click('#copy-client');
    expect(await page.textContent('#snippet')).toMatch(/import \{ Nearline \} from 'nearline\/client'[\s\S]*nl\.nearest\(/);
    await shot('playground');
  });

  it('the map draws every sampled point; hover shows the id, a click runs a nearest query', async () => {
    const map = await api('/v1/features/item_vec@v1/map');
    expect(map.points.length).toBe(1500);
    await page.goto(`${base}/ui/#/map?feature=item_vec@v1`);
    await page.waitForFunction((n) => document.getElementById('map-canvas')?.dataset.points === String(n), map.points.length);
    const points = await page.evaluate(
      () => (document.getElementById('map-canvas') as HTMLCanvasElement & { points: Array<{ id: string; x: number; y: number }> }).points,
    );
    expect(new Set(points.map((p) => p.id))).toEqual(new Set(map.points.map((p: { id: string }) => p.id)));
    // Points are drawn, not just counted: the canvas has coloured pixels where a point is.
    const p = points.find((q) => q.id === 'i10')!;
    const box = (await page.locator('#map-canvas').boundingBox())!;
    const painted = await page.evaluate(({ x, y }) => {
      const c = document.getElementById('map-canvas') as HTMLCanvasElement;
      const dpr = window.devicePixelRatio || 1;
      return Array.from(c.getContext('2d')!.getImageData(Math.round(x * dpr), Math.round(y * dpr), 1, 1).data);
    }, p);
    expect(painted[3]).toBeGreaterThan(0);
    await page.mouse.move(box.x + p.x, box.y + p.y);
    await page.waitForSelector('.tooltip:not([hidden])');
    expect(await page.textContent('.tooltip')).toMatch(/^i\d+ · category: (books|music|garden)$/);
    await page.mouse.click(box.x + p.x, box.y + p.y);
    await page.waitForSelector('#map-hits tbody tr');
    const clicked = (await page.textContent('#map-side h2'))!.replace('Nearest to ', '');
    const hits = await page.$$eval('#map-hits tbody tr', (trs) => trs.map((tr) => tr.dataset.id));
    const truth = await api('/v1/nearest', { feature: 'item_vec@v1', k: 10, query: { id: clicked } });
    expect(hits).toEqual(truth.hits.map((x: { id: string }) => x.id));
    await shot('map');
    await page.selectOption('#map-color', 'price');
    expect(await page.textContent('.legend')).toMatch(/^price\s*0(\.\d+)?\s*\d+(\.\d+)?$/);
    await shot('map-price');
  });

  it('charts plot queries/s and latency, and say "no data yet" for series this server does not have', async () => {
    for (let i = 0; i < 20; i++) await api('/v1/nearest', { feature: 'item_vec', k: 5, query: { id: `i${i}` } });
    await new Promise((r) => setTimeout(r, 1200));
    await page.goto(`${base}/ui/#/charts`);
    await page.waitForSelector('.chart[data-series=qps][data-state=plotted] canvas');
    for (const s of ['p50', 'p99', 'rss']) await page.waitForSelector(`.chart[data-series=${s}][data-state=plotted]`);
    expect(await page.textContent('.chart[data-series=shadowOverlap] .nodata')).toBe('no data yet');
    await shot('charts');
  });

  it('history lists every registry change with who and when', async () => {
    await page.goto(`${base}/ui/#/history`);
    await page.waitForSelector('#events tbody tr');
    const rows = await page.$$eval('#events tbody tr', (trs) => trs.map((tr) => Array.from(tr.querySelectorAll('td')).map((td) => td.textContent!.trim())));
    expect(rows[0][2]).toBe('key.create');
    expect(rows.some((r) => r[2] === 'alias.set' && r[3] === 'item_vec@prod')).toBe(true);
    expect(rows.every((r) => /^user:/.test(r[1]))).toBe(true);
    await page.selectOption('#history-feature', 'item_price');
    await page.waitForFunction(() => document.querySelectorAll('#events tbody tr').length === 2);
    await shot('history');
  });
});
