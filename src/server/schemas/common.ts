import { LIMITS } from '../../store/feature-store.ts';

/** Request limits enforced at the HTTP edge, each answered with a 4xx and a clear code. */
export const HTTP_LIMITS = {
  /** Largest request body, bytes (NL_PAYLOAD_TOO_LARGE). */
  bodyBytes: 8 * 1024 * 1024,
  maxK: LIMITS.maxK,
  maxEf: LIMITS.maxEf,
  /** Queries in one /v1/nearest/batch call. */
  batchQueries: 1024,
  /** Texts in one /v1/embed call, and the longest text anywhere. */
  embedTexts: 256,
  textChars: 20_000,
  /** Upserts and deletes in one PUT of vectors. */
  upserts: 10_000,
  deletes: 10_000,
  /** Ids in one /v1/online call and features joined per call. */
  onlineIds: 10_000,
  features: 64,
  /** Longest vector accepted anywhere; real dims are checked against the feature. */
  dims: 8192,
  /** Ids excluded from one query, and examples per side of a positive/negative query. */
  exclude: 10_000,
  examples: 100,
  idChars: 1024,
  featureRefChars: 200,
} as const;

export const errorSchema = {
  $id: 'NlError',
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: 'string', pattern: '^NL_[A-Z_]+$', description: 'stable machine-readable code' },
        message: { type: 'string' },
      },
    },
  },
} as const;

/** Every route answers errors in one shape. */
export const errorResponses = {
  '4xx': { $ref: 'NlError#', description: 'client error' },
  '5xx': { $ref: 'NlError#', description: 'server error' },
} as const;

export const featureRef = {
  type: 'string',
  minLength: 1,
  maxLength: HTTP_LIMITS.featureRefChars,
  description:
    '`name`, `name@variant` or `name@alias`; bare `name` means alias `prod` if set, else the only variant (with several and no `prod`: 409 NL_AMBIGUOUS_FEATURE listing them)',
} as const;

/** Which variant answered each feature reference of a request: served data is never a guess. */
export const variantsUsed = {
  type: 'object',
  additionalProperties: { type: 'string' },
  description: 'each feature reference of the request, as written -> the `name@variant` that answered it',
} as const;

export const vectorJson = { type: 'array', items: { type: 'number' }, maxItems: HTTP_LIMITS.dims } as const;

export const id = { type: 'string', minLength: 1, maxLength: HTTP_LIMITS.idChars } as const;

export const text = { type: 'string', minLength: 1, maxLength: HTTP_LIMITS.textChars } as const;

/** A scalar feature or metadata value, or a vector, or null where absent. */
export const onlineValue = {
  anyOf: [{ type: 'string' }, { type: 'number' }, { type: 'boolean' }, { type: 'null' }, { type: 'array', items: { type: 'number' } }],
} as const;

/** Backend-neutral filter; its shape is checked against the feature's metadata fields by the store. */
export const filter = {
  type: 'object',
  description: '`{field, op, value}` with op in eq ne in nin gt gte lt lte, or `{and: [...]}`, `{or: [...]}`, `{not: ...}`',
  additionalProperties: true,
} as const;
