import { nlError } from '../../errors.ts';
import { checkMaxInvalid } from '../../materialize/job.ts';
import type { Command } from './index.ts';
import { withStore } from './open.ts';
import { formatRef } from '../../refs.ts';

export const materializeCommand: Command = {
  summary: 'read a source, embed if needed, write the provider (progress bar, resumable)',
  usage: `usage: nearline materialize FEATURE[@VARIANT] [--resume] [--skip-invalid [--max-invalid N]] [--batch N] [--checkpoint-rows N] [--home DIR]
  --resume            continue an interrupted run from its last checkpoint
  --skip-invalid      skip rows with a missing id, wrong dims or NaN; the first 10 are printed, every one is
                      listed in <home>/reports/FEATURE@VARIANT.invalid.jsonl
  --max-invalid N     with --skip-invalid, fail (publishing nothing) when more rows are invalid than N: below 1 a
                      fraction of the rows read (0.05 = 5%), from 1 a number of rows (default 0.01)
  --batch N           rows per write batch (default 1000; 128 for text)
  --checkpoint-rows N make writes durable and checkpoint every N rows (default 50000)`,
  options: {
    resume: { type: 'boolean' },
    'skip-invalid': { type: 'boolean' },
    'max-invalid': { type: 'string' },
    batch: { type: 'string' },
    'checkpoint-rows': { type: 'string' },
  },
  async run({ home, values, positionals }) {
    const [ref] = positionals;
    if (!ref || positionals.length > 1) {
      process.stderr.write(`${this.usage}\n`);
      return 2;
    }
    const int = (name: string) => (values[name] === undefined ? undefined : positiveInt(values[name] as string, name));
    const maxInvalid = values['max-invalid'] === undefined ? undefined : checkMaxInvalid(Number(values['max-invalid']));
    if (maxInvalid !== undefined && !values['skip-invalid'])
      throw nlError('NL_BAD_REQUEST', '--max-invalid goes with --skip-invalid (without it, any invalid row fails the run)');
    return withStore(home, async (store) => {
      const result = await store.materialize(ref, {
        resume: Boolean(values.resume),
        skipInvalid: Boolean(values['skip-invalid']),
        maxInvalid,
        batchSize: int('batch'),
        checkpointRows: int('checkpoint-rows'),
      });
      if (result.status === 'unchanged') {
        process.stdout.write(`${formatRef(result.feature, result.variant)} is already materialized (${result.rows} rows): nothing to do\n`);
      } else {
        if (result.resumedFrom !== undefined) process.stderr.write(`resumed after source line ${result.resumedFrom}\n`);
        for (const bad of result.invalid) process.stderr.write(`skipped line ${bad.line}: ${bad.reason}\n`);
        if (result.skipped > result.invalid.length) process.stderr.write(`... and ${result.skipped - result.invalid.length} more\n`);
        if (result.invalidReport) process.stderr.write(`every skipped row is listed in ${result.invalidReport}\n`);
        process.stdout.write(
          `${formatRef(result.feature, result.variant)}: ${result.rows} rows materialized${result.skipped ? `, ${result.skipped} invalid rows skipped` : ''}${result.cacheHits + result.embedded ? `, ${result.embedded} texts embedded, ${result.cacheHits} from the embedding cache` : ''} in ${result.seconds.toFixed(1)}s\n`,
        );
      }
      return 0;
    });
  },
};

function positiveInt(text: string, name: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw nlError('NL_BAD_REQUEST', `--${name} must be a positive integer`);
  return n;
}
