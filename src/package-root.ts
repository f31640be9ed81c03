import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/**
 * nearline's package folder (where package.json and native/ live), found by walking up from this file, so the
 * same code works from src/ (TypeScript, in the checkout) and from dist/ (compiled, installed).
 */
export function packageRoot(): string {
  if (root) return root;
  for (let dir = dirname(fileURLToPath(import.meta.url)); ;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'nearline') return (root = dir);
    const up = dirname(dir);
    if (up === dir) throw new Error(`nearline's package.json not found above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}
