/**
 * Every nearline error: code -> HTTP status and message template (`%s` placeholders, in order).
 * The HTTP layer maps codes to statuses; nothing else does.
 */
export const ERRORS = {
  NL_BAD_REQUEST: [400, '%s'],
  NL_BAD_DEFINITION: [400, '%s'],
  NL_BAD_FILTER: [400, 'bad filter: %s'],
  NL_BAD_VECTOR: [400, '%s'],
  NL_BAD_TEXT: [400, '%s'],
  NL_BAD_SOURCE_ROW: [400, '%s'],
  NL_DIMENSION_MISMATCH: [400, 'dimension mismatch: expected %s, got %s'],
  NL_LIMIT_EXCEEDED: [400, '%s'],
  NL_UNAUTHORIZED: [401, 'missing or invalid API key'],
  NL_FORBIDDEN: [403, '%s'],
  NL_FEATURE_NOT_FOUND: [404, 'feature %s not found'],
  NL_MODEL_NOT_FOUND: [404, 'model %s not found'],
  NL_PROVIDER_NOT_FOUND: [404, 'provider %s not found'],
  NL_SOURCE_NOT_FOUND: [404, 'source %s not found'],
  NL_ENTITY_NOT_FOUND: [404, 'entity %s not found'],
  NL_ID_NOT_FOUND: [404, 'id %s not found in %s'],
  NL_NOT_FOUND: [404, '%s'],
  NL_VARIANT_IMMUTABLE: [409, '%s is immutable: %s'],
  NL_MODEL_CHANGED: [409, 'model %s changed on disk: %s'],
  NL_CONFLICT: [409, '%s'],
  NL_NOT_MATERIALIZED: [409, 'feature %s is not materialized'],
  NL_GATE_FAILED: [409, 'gate refused %s: %s'],
  NL_LEASE_HELD: [409, '%s is being built by %s; a second build is refused until its lease lapses'],
  NL_LOG_LOCKED: [409, 'the log of source %s is held by %s; push through that process'],
  NL_LOG_CORRUPT: [500, 'the log of source %s is corrupt: %s'],
  NL_LOG_UNAVAILABLE: [503, 'the log of source %s is unavailable: %s'],
  NL_AMBIGUOUS_FEATURE: [409, 'feature %s is ambiguous: %s'],
  NL_ALIAS_REFUSED: [409, 'alias %s -> %s refused: %s'],
  NL_CONFIRMATION_REQUIRED: [409, '%s'],
  NL_UNSUPPORTED: [422, '%s'],
  NL_MODEL_INVALID: [422, 'model %s is invalid: %s'],
  NL_PAYLOAD_TOO_LARGE: [413, '%s'],
  NL_OVERLOADED: [503, '%s'],
  NL_PROVIDER_ERROR: [502, 'provider %s failed: %s'],
  NL_BAD_REGISTRY: [400, 'bad registry %s: %s'],
  NL_REGISTRY_UNAVAILABLE: [503, 'registry %s is unavailable: %s'],
  NL_REGISTRY_BUSY: [503, 'registry %s is busy: %s'],
  NL_MISSING_PACKAGE: [500, '%s needs the package %s, which is not installed: npm install %s'],
  NL_INTERNAL: [500, '%s'],
} as const satisfies Record<string, readonly [number, string]>;

export type ErrorCode = keyof typeof ERRORS;

export class NearlineError extends Error {
  readonly code: ErrorCode;
  readonly status: number;

  constructor(code: ErrorCode, args: readonly unknown[] = [], options?: { cause?: unknown }) {
    const [status, template] = ERRORS[code];
    let i = 0;
    super(
      template.replace(/%s/g, () => String(args[i++] ?? '')),
      options,
    );
    this.name = 'NearlineError';
    this.code = code;
    this.status = status;
  }

  toJSON(): { error: { code: ErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

/** Shorthand: `throw nlError('NL_FEATURE_NOT_FOUND', name)`. */
export function nlError(code: ErrorCode, ...args: unknown[]): NearlineError {
  return new NearlineError(code, args);
}

/** Wraps a backend failure with its provider's name, keeping the cause. */
export function providerError(provider: string, cause: unknown): NearlineError {
  if (cause instanceof NearlineError) return cause;
  const message = cause instanceof Error ? cause.message : String(cause);
  return new NearlineError('NL_PROVIDER_ERROR', [provider, message], { cause });
}

export function isNearlineError(e: unknown, code?: ErrorCode): e is NearlineError {
  return e instanceof NearlineError && (code === undefined || e.code === code);
}
