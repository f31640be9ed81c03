import { errorResponses } from './common.ts';

/** Rows in one push; the store enforces the same bound (and the row size) for library callers. */
export const PUSH_LIMITS = { rows: 1000 } as const;

export const pushSchema = {
  summary: 'push rows to a source (scope write): every variant built from it updates; 200 once durable and applied',
  tags: ['writing'],
  params: {
    type: 'object',
    required: ['source'],
    properties: { source: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[A-Za-z][A-Za-z0-9_-]*$' } },
  },
  body: {
    type: 'object',
    required: ['rows'],
    additionalProperties: false,
    properties: {
      rows: {
        type: 'array',
        minItems: 1,
        maxItems: PUSH_LIMITS.rows,
        description: 'source rows, each with the entity key column; `{<key>: id, _deleted: true}` deletes the entity everywhere',
        items: { type: 'object' },
      },
    },
  },
  response: {
    200: {
      type: 'object',
      required: ['source', 'accepted', 'offset'],
      properties: {
        source: { type: 'string' },
        accepted: { type: 'integer', description: 'rows made durable and applied' },
        offset: { type: 'integer', description: "log offset of the last row; every variant whose applied offset reaches it holds the rows" },
      },
    },
    ...errorResponses,
  },
} as const;
