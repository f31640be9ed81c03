import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { LIMITS } from '../../store/feature-store.ts';
import type { Filter } from '../../types.ts';

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

export const ErrorBody = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ pattern: '^NL_[A-Z_]+$', description: 'stable machine-readable code' }),
      message: Type.String(),
    }),
  },
  { $id: 'NlError' },
);
export type ErrorBody = Static<typeof ErrorBody>;

/** Every route answers errors in one shape. */
export const errorResponses = {
  '4xx': { $ref: 'NlError#', description: 'client error' },
  '5xx': { $ref: 'NlError#', description: 'server error' },
} as const;

export const featureRef = Type.String({
  minLength: 1,
  maxLength: HTTP_LIMITS.featureRefChars,
  description:
    '`name`, `name@variant` or `name@alias`; bare `name` means alias `prod` if set, else the only variant (with several and no `prod`: 409 NL_AMBIGUOUS_FEATURE listing them)',
});

/** Which variant answered each feature reference of a request: served data is never a guess. */
export const variantsUsed = Type.Unsafe<Record<string, string>>({
  type: 'object',
  additionalProperties: { type: 'string' },
  description: 'each feature reference of the request, as written -> the `name@variant` that answered it',
});

export const vectorJson = Type.Array(Type.Number(), { maxItems: HTTP_LIMITS.dims });

export const id = Type.String({ minLength: 1, maxLength: HTTP_LIMITS.idChars });

export const text = Type.String({ minLength: 1, maxLength: HTTP_LIMITS.textChars });

/** A scalar feature or metadata value, or a vector, or null where absent. */
export const onlineValue = Type.Union([Type.String(), Type.Number(), Type.Boolean(), Type.Null(), Type.Array(Type.Number())]);

export const scalar = Type.Union([Type.String(), Type.Number(), Type.Boolean(), Type.Null()]);

/** Backend-neutral filter; its shape is checked against the feature's metadata fields by the store. */
export const filter = Type.Unsafe<Filter>({
  type: 'object',
  description: '`{field, op, value}` with op in eq ne in nin gt gte lt lte, or `{and: [...]}`, `{or: [...]}`, `{not: ...}`',
  additionalProperties: true,
});

/** An object of any keys whose values match `value` (JSON Schema `additionalProperties`, as the wire always had). */
export function recordOf<T extends TSchema>(value: T) {
  return Type.Unsafe<Record<string, Static<T>>>({ type: 'object', additionalProperties: value });
}
