import { FeatureStore } from '../store/feature-store.ts';
import type { LiveOptions } from '../store/live.ts';
import { build, type BuildOptions } from './app.ts';
import { announceServing } from './serving.ts';

export interface ListenOptions extends Omit<BuildOptions, 'store'> {
  /** Home folder of the registry and indexes. */
  home: string;
  port: number;
  /** Interface to bind. Default 127.0.0.1 while no API key exists, else 0.0.0.0. */
  host?: string;
  /** Pushed rows: snapshot cadence and limits. */
  live?: LiveOptions;
}

/** Opens the store, builds the app and listens; `close()` stops accepting, drains, and closes the store. */
export async function listen(opts: ListenOptions): Promise<{ address: string; close(): Promise<void> }> {
  const { home, port, host, live, ...buildOpts } = opts;
  const store = FeatureStore.open({ home, live });
  // This process appends to every source's log while it serves; another process pushing here would be refused.
  try {
    await store.live.claim();
  } catch (e) {
    await store.close();
    throw e;
  }
  const app = await build({ store, logger: { level: process.env.NEARLINE_LOG_LEVEL ?? 'info' }, ...buildOpts });
  const keys = await store.registry.countKeys();
  const bindTo = host ?? (keys > 0 ? '0.0.0.0' : '127.0.0.1');
  try {
    const address = await app.listen({ port, host: bindTo });
    const withdraw = announceServing(store.home, address);
    if (keys === 0 && host === undefined) {
      app.log.warn(
        `no API key exists, so the API is open and bound to 127.0.0.1 only; create one with \`nearline keys create\` or pass --host to bind elsewhere`,
      );
    } else if (keys === 0) {
      app.log.warn(`no API key exists: the API is open to anyone who can reach ${address}`);
    }
    return {
      address,
      close: async () => {
        withdraw();
        await app.close();
        await store.close();
      },
    };
  } catch (e) {
    await app.close();
    await store.close();
    throw e;
  }
}
