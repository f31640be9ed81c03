import { Type, type Static } from '@sinclair/typebox';
import { errorResponses } from './common.ts';

/** Rows in one push; the store enforces the same bound (and the row size) for library callers. */
export const PUSH_LIMITS = { rows: 1000 } as const;

export const SourceParams = Type.Object({ source: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z][A-Za-z0-9_-]*$' }) });

export const PushBody = Type.Object(
  {
    rows: Type.Array(Type.Unsafe<Record<string, unknown>>({ type: 'object' }), {
      minItems: 1,
      maxItems: PUSH_LIMITS.rows,
      description: 'source rows, each with the entity key column; `{<key>: id, _deleted: true}` deletes the entity everywhere',
    }),
  },
  { additionalProperties: false },
);
export type PushBody = Static<typeof PushBody>;

export const PushResponse = Type.Object({
  source: Type.String(),
  accepted: Type.Integer({ description: 'rows made durable and applied' }),
  offset: Type.Integer({ description: 'log offset of the last row; every variant whose applied offset reaches it holds the rows' }),
});
export type PushResponse = Static<typeof PushResponse>;

export const pushSchema = {
  summary: 'push rows to a source (scope write): every variant built from it updates; 200 once durable and applied',
  tags: ['writing'],
  params: SourceParams,
  body: PushBody,
  response: { 200: PushResponse, ...errorResponses },
} as const;
