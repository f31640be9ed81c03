import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { nlError } from '../../errors.ts';
import { packageRoot } from '../../package-root.ts';
import type { ServerContext } from '../context.ts';

/** The dashboard's files: `ui/` at the package root (beside `src/` and `dist/`), and uPlot from node_modules. */
const UI_DIR = path.join(packageRoot(), 'ui');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

function assets(): Map<string, { type: string; body: Buffer }> {
  const require = createRequire(import.meta.url);
  const files: Array<[string, string]> = [
    ['index.html', path.join(UI_DIR, 'index.html')],
    ['app.js', path.join(UI_DIR, 'app.js')],
    ['style.css', path.join(UI_DIR, 'style.css')],
    ['favicon.svg', path.join(UI_DIR, 'favicon.svg')],
    ['vendor/uplot.js', require.resolve('uplot/dist/uPlot.iife.min.js')],
    ['vendor/uplot.css', require.resolve('uplot/dist/uPlot.min.css')],
  ];
  return new Map(files.map(([name, file]) => [name, { type: TYPES[path.extname(name)], body: readFileSync(file) }]));
}

/**
 * `/ui`: static files only, open like /docs. They hold no data; every number on the pages comes from /v1
 * with the API key the user types once (kept in the browser tab's sessionStorage).
 */
export async function uiRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  const files = assets();
  const hide = { schema: { hide: true } };
  // Whether to ask for a key before the first call, so the page never starts with a refused request.
  app.get('/ui/session.json', hide, async () => ({ keyRequired: await ctx.auth.required() }));
  app.get('/ui', hide, async (_request, reply) => reply.redirect('/ui/'));
  app.get('/ui/*', hide, async (request, reply) => {
    const name = (request.params as { '*': string })['*'] || 'index.html';
    const file = files.get(name);
    if (!file) throw nlError('NL_NOT_FOUND', `no dashboard file ${name}`);
    reply.type(file.type).header('cache-control', 'no-cache');
    return file.body;
  });
}
