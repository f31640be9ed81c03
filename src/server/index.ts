// `nearline/server`: the HTTP API as a fastify app (build) and a listener over a home folder (listen).
export { build } from './app.ts';
export type { BuildOptions } from './app.ts';
export { listen } from './server.ts';
export type { ListenOptions } from './server.ts';
export type { AuthOptions } from './auth.ts';
export type { LaneOptions } from './limiter.ts';
