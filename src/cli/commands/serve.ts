import { nlError } from '../../errors.ts';
import type { Command } from './index.ts';

function positive(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!(n > 0) || !Number.isFinite(n)) throw nlError('NL_BAD_REQUEST', `${name} must be a positive number`);
  return n;
}

export const serve: Command = {
  summary: 'start the HTTP server (fastify; dashboard at /ui, OpenAPI at /docs)',
  usage: `usage: nearline serve [--port 8080] [--host 127.0.0.1] [--snapshot-rows 50000] [--snapshot-seconds 30] [--home DIR]
  With no API key created the server binds to 127.0.0.1 only, unless --host says otherwise.
  Pushed rows are durable in each source's log when acknowledged; indexes are snapshotted in the background
  every --snapshot-rows applied rows or --snapshot-seconds, and on shutdown.`,
  options: { port: { type: 'string' }, host: { type: 'string' }, 'snapshot-rows': { type: 'string' }, 'snapshot-seconds': { type: 'string' } },
  async run({ home, values }) {
    const { listen } = await import('../../server/server.ts');
    const server = await listen({
      home,
      port: values.port === undefined ? 8080 : Number(values.port),
      ...(values.host !== undefined ? { host: values.host as string } : {}),
      live: {
        snapshotEntries: positive(values['snapshot-rows'], '--snapshot-rows'),
        snapshotSeconds: positive(values['snapshot-seconds'], '--snapshot-seconds'),
      },
    });
    process.stderr.write(`nearline: serving ${server.address} (dashboard ${server.address}/ui, API docs ${server.address}/docs)\n`);
    const stop = async () => {
      await server.close();
      process.exit(0);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    return new Promise<number>(() => undefined);
  },
};
