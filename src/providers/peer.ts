import { NearlineError } from '../errors.ts';

/**
 * Imports a backend's module; its client library or runtime is an optional peer dependency of nearline, so a
 * missing one becomes NL_MISSING_PACKAGE naming what to install instead of a resolution error.
 */
export async function peer<T>(what: string, packages: readonly string[], load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const message = (e as Error).message ?? '';
    const missing = packages.find((p) => message.includes(`'${p}'`) || message.includes(`"${p}"`));
    if ((code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && missing) {
      throw new NearlineError('NL_MISSING_PACKAGE', [what, missing, packages.join(' ')], { cause: e });
    }
    throw e;
  }
}
