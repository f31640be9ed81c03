import { nlError } from '../../errors.ts';
import { fileSize, readChunks } from './file-chunks.ts';
import type { Source, SourceRow, SourceSpec } from './types.ts';

const QUOTE = 34;
const NEWLINE = 10;

/**
 * RFC 4180 CSV with a header row: quoted fields may hold delimiters, doubled quotes and newlines.
 * Streams record by record; resumes at a byte offset (the header is re-read from the start).
 */
export function createCsvSource(spec: SourceSpec & { delimiter?: string }): Source {
  const path = spec.path!;
  const delimiter = spec.delimiter ?? ',';
  if (delimiter.length !== 1 || delimiter === '"' || delimiter === '\n')
    throw nlError('NL_BAD_DEFINITION', `source ${spec.name}: bad CSV delimiter ${JSON.stringify(delimiter)}`);
  return {
    size: () => fileSize(path),
    async columns() {
      for await (const rec of records(path, 0)) return splitRecord(rec.text, delimiter);
      return undefined;
    },
    async *read(from = { position: 0, line: 0 }): AsyncGenerator<SourceRow> {
      let header: string[] | undefined;
      let line = 0;
      if (from.position > 0) {
        for await (const rec of records(path, 0)) {
          header = splitRecord(rec.text, delimiter);
          break;
        }
        line = from.line;
      }
      for await (const rec of records(path, from.position)) {
        const startLine = line + 1;
        line += rec.newlines;
        if (!header) {
          header = splitRecord(rec.text, delimiter);
          continue;
        }
        if (rec.text.trim() === '') continue;
        const fields = splitRecord(rec.text, delimiter);
        if (fields.length !== header.length) {
          yield { line: startLine, values: {}, position: rec.end, error: `expected ${header.length} fields, found ${fields.length}` };
          continue;
        }
        const values: Record<string, unknown> = {};
        for (let i = 0; i < header.length; i++) values[header[i]] = fields[i];
        yield { line: startLine, values, position: rec.end };
      }
    },
  };
}

/** Finds record boundaries: a newline outside quotes ends a record. */
async function* records(path: string, from: number): AsyncGenerator<{ text: string; end: number; newlines: number }> {
  let carry: Buffer | null = null;
  let carryStart = from;
  let inQuotes = false;
  let scanFrom = 0;
  let newlines = 0;
  for await (const { buf, offset } of readChunks(path, from)) {
    const data: Buffer = carry ? Buffer.concat([carry, buf]) : buf;
    const base = carry ? carryStart : offset;
    let start = 0;
    for (let i = scanFrom; i < data.length; i++) {
      const b = data[i];
      if (b === QUOTE) inQuotes = !inQuotes;
      else if (b === NEWLINE) {
        newlines++;
        if (!inQuotes) {
          const endByte = i > start && data[i - 1] === 13 ? i - 1 : i;
          yield { text: data.toString('utf8', start, endByte), end: base + i + 1, newlines };
          newlines = 0;
          start = i + 1;
        }
      }
    }
    carry = start < data.length ? data.subarray(start) : null;
    carryStart = base + start;
    scanFrom = carry ? carry.length : 0;
  }
  if (carry && carry.length) yield { text: carry.toString('utf8'), end: carryStart + carry.length, newlines: newlines + 1 };
}

function splitRecord(text: string, delimiter: string): string[] {
  const out: string[] = [];
  let field = '';
  let inQuotes = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inQuotes) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else inQuotes = false;
      } else field += c;
    } else if (c === '"' && field === '') inQuotes = true;
    else if (c === delimiter) {
      out.push(field);
      field = '';
    } else field += c;
  }
  out.push(field);
  return out;
}
