import { spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir, wordDefs, writeDefs, writeWords } from '../helpers/fixtures.ts';
import { BIN, cli } from './helpers.ts';

/** word_vec@v1 materialized behind prod; v2 (9 dims on an 8-d source) failed; v3 on an empty source (0 rows); v4 good, materialized. */
function definitions() {
  const defs = wordDefs(8);
  const v1 = defs.features[0];
  defs.sources.push({ name: 'empty', variant: 'v1', kind: 'jsonl', path: 'empty.jsonl' });
  (defs.features as Array<Record<string, unknown>>).push(
    { ...v1, variant: 'v2', dims: 9 },
    { ...v1, variant: 'v3', source: 'empty@v1' },
    { ...v1, variant: 'v4', metric: 'dot' },
  );
  return defs;
}

describe('aliases refuse variants that cannot answer (regression: prod pointed at a failed variant, an outage)', () => {
  let home: string;
  const prod = () => cli(home, 'list', 'aliases').out.match(/word_vec@prod\s+(\S+)/)?.[1];

  beforeAll(() => {
    home = tempDir();
    writeWords(home, 200, 8);
    writeFileSync(path.join(home, 'empty.jsonl'), '');
    writeDefs(home, definitions());
    expect(cli(home, 'apply', 'defs.yaml').code).toBe(0);
    for (const v of ['v1', 'v3', 'v4']) expect(cli(home, 'materialize', `word_vec@${v}`).code).toBe(0);
    expect(cli(home, 'materialize', 'word_vec@v2').err).toMatch(/NL_BAD_SOURCE_ROW.*dimension mismatch/);
  });

  it('alias set refuses a failed variant and a 0-row variant, alias unchanged; --force overrides', () => {
    const failed = cli(home, 'alias', 'set', 'word_vec', 'prod', 'v2');
    expect(failed.code).toBe(1);
    expect(failed.err).toMatch(/NL_ALIAS_REFUSED: alias word_vec@prod -> v2 refused: word_vec@v2 is failed, not materialized.*--force/);
    const empty = cli(home, 'alias', 'set', 'word_vec', 'prod', 'v3');
    expect(empty.code).toBe(1);
    expect(empty.err).toMatch(/NL_ALIAS_REFUSED.*word_vec@v3 holds 0 rows/);
    expect(prod()).toBe('v1');
    expect(cli(home, 'alias', 'set', 'word_vec', 'canary', 'v3', '--force').code).toBe(0);
    expect(cli(home, 'list', 'aliases').out).toMatch(/word_vec@canary\s+v3/);
  });

  it('apply refuses an alias to a failed variant: plan line, non-zero exit, nothing written', () => {
    const defs = definitions();
    defs.aliases = [{ feature: 'word_vec', name: 'prod', variant: 'v2' }];
    writeDefs(home, defs, 'to-failed.yaml');
    const r = cli(home, 'apply', 'to-failed.yaml');
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/refused\s+alias\s+word_vec@prod\s+\(NL_ALIAS_REFUSED: -> v2: word_vec@v2 is failed/);
    expect(r.out).toContain('nothing was written');
    expect(prod()).toBe('v1');
  });

  it('apply moving an alias warns, and without a terminal needs --yes', () => {
    const defs = definitions();
    defs.aliases = [{ feature: 'word_vec', name: 'prod', variant: 'v4' }];
    writeDefs(home, defs, 'move.yaml');
    const dry = cli(home, 'apply', 'move.yaml', '--dry-run');
    expect(dry.code).toBe(0);
    expect(dry.err).toContain('warning: alias word_vec@prod moves v1 -> v4: every call to word_vec@prod and to bare word_vec switches variant');
    const noYes = cli(home, 'apply', 'move.yaml');
    expect(noYes.code).toBe(1);
    expect(noYes.err).toContain('warning: alias word_vec@prod moves v1 -> v4');
    expect(noYes.err).toContain('error NL_CONFIRMATION_REQUIRED');
    expect(noYes.out).toMatch(/update\s+alias\s+word_vec@prod\s+\(v1 -> v4\)/);
    expect(noYes.out).toContain('not confirmed, nothing was written');
    expect(prod()).toBe('v1');
    const yes = cli(home, 'apply', 'move.yaml', '--yes');
    expect(yes.code).toBe(0);
    expect(yes.err).toContain('warning: alias word_vec@prod moves v1 -> v4');
    expect(prod()).toBe('v4');
  });

  // `script` gives the CLI a terminal, as a user at a shell has.
  const hasScript = spawnSync('script', ['--version']).status === 0;
  it.skipIf(!hasScript)('on a terminal, apply asks before moving an alias: no keeps it, yes moves it', () => {
    const defs = definitions();
    defs.aliases = [{ feature: 'word_vec', name: 'prod', variant: 'v1' }];
    writeDefs(home, defs, 'back.yaml');
    const onTerminal = (answer: string) => {
      const command = [process.execPath, BIN, 'apply', 'back.yaml', '--home', home].map((a) => `'${a}'`).join(' ');
      return spawnSync('script', ['-qec', command, '/dev/null'], { cwd: home, input: `${answer}\n`, encoding: 'utf8' });
    };
    const no = onTerminal('n');
    expect(no.stdout).toContain('apply despite the warnings above? [y/N]');
    expect(no.stdout).toContain('not confirmed, nothing was written');
    expect(no.status).toBe(1);
    expect(prod()).toBe('v4');
    const yes = onTerminal('y');
    expect(yes.stdout).toContain('applied');
    expect(yes.status).toBe(0);
    expect(prod()).toBe('v1');
  });

  it('apply --dry-run in a new home creates nothing (no nearline.db)', () => {
    const fresh = tempDir();
    writeWords(fresh, 20, 8);
    writeDefs(fresh, wordDefs(8));
    const before = readdirSync(fresh).sort();
    const r = cli(fresh, 'apply', 'defs.yaml', '--dry-run');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/create\s+feature\s+word_vec@v1/);
    expect(r.out).toContain('dry run, nothing was written');
    expect(readdirSync(fresh).sort()).toEqual(before);
  });
});
