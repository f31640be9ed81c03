import type { Source, SourceRow, SourceSpec } from './types.ts';
import { fileSize, readLines } from './file-chunks.ts';

/** JSON Lines: one object per line, blank lines ignored. Streams; resumes at a byte offset. */
export function createJsonlSource(spec: SourceSpec): Source {
  const path = spec.path!;
  return {
    size: () => fileSize(path),
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
