/**
 * How a text feature builds the text it embeds from a source row: one column, several columns joined by a
 * newline, or a template such as `"{title}. {description}"`. Part of the variant's definition, so the same
 * row always gives the same text, in a materialization and in a write.
 */
export interface TextSource {
  column?: string;
  columns?: string[];
  template?: string;
}

type Part = string | { column: string };

const TOKEN = /\{\{|\}\}|\{([^{}]*)\}|[{}]/g;

/** A template's literal text and placeholders; `{{` and `}}` are literal braces. Throws on a malformed one. */
export function parseTemplate(template: string): Part[] {
  const parts: Part[] = [];
  let last = 0;
  for (const m of template.matchAll(TOKEN)) {
    if (m.index > last) parts.push(template.slice(last, m.index));
    last = m.index + m[0].length;
    if (m[0] === '{{' || m[0] === '}}') parts.push(m[0][0]);
    else if (m[1] === undefined) throw new Error(`unbalanced "${m[0]}" at character ${m.index + 1} (write {{ or }} for a literal brace)`);
    else if (!m[1].trim()) throw new Error(`empty placeholder at character ${m.index + 1}`);
    else parts.push({ column: m[1].trim() });
  }
  if (last < template.length) parts.push(template.slice(last));
  if (!parts.some((p) => typeof p !== 'string')) throw new Error('it names no column (placeholders look like {title})');
  return parts;
}

/** The source columns a text feature reads. */
export function textColumns(spec: TextSource): string[] {
  if (spec.template !== undefined) return [...new Set(parseTemplate(spec.template).flatMap((p) => (typeof p === 'string' ? [] : [p.column])))];
  return spec.columns ?? (spec.column !== undefined ? [spec.column] : []);
}

/** How the definition reads, for messages and lineage. */
export function describeText(spec: TextSource): string {
  if (spec.template !== undefined) return `template ${JSON.stringify(spec.template)}`;
  if (spec.columns) return `columns ${spec.columns.join(', ')}`;
  return `column "${spec.column}"`;
}

/** The text to embed for one row, or why the row has none (no column brings any text). Missing and null values read as empty. */
export function buildText(spec: TextSource, values: Record<string, unknown>): string | { reason: string } {
  let text: string;
  if (spec.template !== undefined) {
    const parts = parseTemplate(spec.template);
    // Only the template's own punctuation is no text: at least one placeholder must bring some.
    if (parts.every((p) => typeof p === 'string' || !cell(values[p.column]).trim())) return { reason: `the text built from ${describeText(spec)} is empty` };
    text = parts.map((p) => (typeof p === 'string' ? p : cell(values[p.column]))).join('');
  } else if (spec.columns) {
    text = spec.columns
      .map((c) => cell(values[c]).trim())
      .filter(Boolean)
      .join('\n');
  } else {
    const v = values[spec.column!];
    if (typeof v !== 'string' || v.trim() === '') return { reason: `text column "${spec.column}" is empty or not a string` };
    return v;
  }
  if (!text.trim()) return { reason: `the text built from ${describeText(spec)} is empty` };
  return text;
}

function cell(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}
