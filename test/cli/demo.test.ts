import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/fixtures.ts';

const BIN = path.resolve(import.meta.dirname, '../../bin/nearline.mjs');

describe('nearline demo', () => {
  it('runs the main job offline on embedded defaults and honours the metadata filter', () => {
    const home = tempDir();
    const r = spawnSync(process.execPath, [BIN, 'demo', '--docs', '80', '--home', home], { encoding: 'utf8', env: { ...process.env, NEARLINE_HOME: '' } });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/create\s+model\s+use@1/);
    expect(r.stdout).toMatch(/80 rows in/);
    const blocks = r.stdout.split('$ nearline nearest').slice(1);
    expect(blocks).toHaveLength(4);
    for (const block of blocks)
      expect(
        block
          .trim()
          .split('\n')
          .filter((l) => /^\s+[01]\.\d{3}\s+\[/.test(l)),
      ).toHaveLength(5);
    const hamOnly = blocks.find((b) => b.includes('"value":"ham"'))!;
    expect(hamOnly).not.toMatch(/\[spam\]/);
    expect(hamOnly).toMatch(/\[ham /);
  });
});
