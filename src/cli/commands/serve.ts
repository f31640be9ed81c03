import type { Command } from './index.ts';

export const serve: Command = {
  summary: 'start the HTTP server (fastify; OpenAPI at /docs)',
  usage: `usage: nearline serve [--port 8080] [--host 127.0.0.1] [--home DIR]
  With no API key created the server binds to 127.0.0.1 only, unless --host says otherwise.`,
  options: { port: { type: 'string' }, host: { type: 'string' } },
  async run({ home, values }) {
    const { listen } = await import('../../server/server.ts');
    const server = await listen({
      home,
      port: values.port === undefined ? 8080 : Number(values.port),
      ...(values.host !== undefined ? { host: values.host as string } : {}),
    });
    const stop = async () => {
      await server.close();
      process.exit(0);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    return new Promise<number>(() => undefined);
  },
};
