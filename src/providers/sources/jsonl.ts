import type { Source, SourceRow, SourceSpec } from './types.ts';
import { fileSize, readLines } from './file-chunks.ts';

/** Rows whose keys make a JSON Lines source's columns: a column absent from all of them is taken for a typo. */
export const COLUMN_SAMPLE = 1000;

/** JSON Lines: one object per line, blank lines ignored. Streams; resumes at a byte offset. */
export function createJsonlSource(spec: SourceSpec): Source {
  const path = spec.path!;
  return {
    size: () => fileSize(path),
    async columns() {
      const seen = new Set<string>();
      let rows = 0;
      for await (const { text } of readLines(path, 0)) {
        if (text.trim() === '') continue;
        try {
          const values = JSON.parse(text) as unknown;
          if (values && typeof values === 'object' && !Array.isArray(values)) for (const key of Object.keys(values)) seen.add(key);
        } catch {
          // A malformed line is reported, with its number, by the materialization.
        }
        if (++rows >= COLUMN_SAMPLE) break;
      }
      return rows ? [...seen] : undefined;
    },
    async *read(from = { position: 0, line: 0 }): AsyncGenerator<SourceRow> {
      let line = from.line;
      for await (const { text, end } of readLines(path, from.position)) {
        line++;
        if (text.trim() === '') continue;
        let values: unknown;
        try {
          values = JSON.parse(text);
        } catch (e) {
          yield { line, values: {}, position: end, error: `invalid JSON (${(e as Error).message})` };
          continue;
        }
        if (values === null || typeof values !== 'object' || Array.isArray(values)) {
          yield { line, values: {}, position: end, error: 'expected a JSON object' };
          continue;
        }
        yield { line, values: values as Record<string, unknown>, position: end };
      }
    },
  };
}
