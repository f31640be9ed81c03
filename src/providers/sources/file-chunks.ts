import { open } from 'node:fs/promises';
import { nlError } from '../../errors.ts';

const CHUNK = 1 << 20;

/** Streams a file from a byte offset in 1 MiB chunks: memory stays flat whatever the file's size. */
export async function* readChunks(path: string, from: number): AsyncGenerator<{ buf: Buffer; offset: number }> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (e) {
    throw nlError('NL_SOURCE_NOT_FOUND', `${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    let offset = from;
    for (;;) {
      const buf = Buffer.allocUnsafe(CHUNK);
      const { bytesRead } = await handle.read(buf, 0, CHUNK, offset);
      if (bytesRead === 0) return;
      yield { buf: buf.subarray(0, bytesRead), offset };
      offset += bytesRead;
    }
  } finally {
    await handle.close();
  }
}

export async function fileSize(path: string): Promise<number | undefined> {
  const { stat } = await import('node:fs/promises');
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

/**
 * Splits a byte stream into lines, reporting each line's end offset (after its newline) so a reader
 * can resume exactly after any line.
 */
export async function* readLines(path: string, from: number): AsyncGenerator<{ text: string; end: number }> {
  let carry: Buffer | null = null;
  let carryStart = from;
  for await (const { buf, offset } of readChunks(path, from)) {
    const data: Buffer = carry ? Buffer.concat([carry, buf]) : buf;
    const base = carry ? carryStart : offset;
    let start = 0;
    for (let nl = data.indexOf(10, start); nl >= 0; nl = data.indexOf(10, start)) {
      const endByte = nl > start && data[nl - 1] === 13 ? nl - 1 : nl;
      yield { text: data.toString('utf8', start, endByte), end: base + nl + 1 };
      start = nl + 1;
    }
    carry = start < data.length ? data.subarray(start) : null;
    carryStart = base + start;
  }
  if (carry && carry.length) yield { text: carry.toString('utf8'), end: carryStart + carry.length };
}
