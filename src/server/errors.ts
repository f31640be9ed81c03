import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isNearlineError, NearlineError, nlError } from '../errors.ts';
import type { Metrics } from './metrics.ts';

interface AjvError {
  instancePath: string;
  keyword: string;
  message?: string;
  params?: Record<string, unknown>;
}

/** Schema keywords that carry a server limit (k, ef, batch size, texts, lengths): answered NL_LIMIT_EXCEEDED. */
const LIMIT_KEYWORDS = new Set(['maximum', 'maxItems', 'maxLength', 'maxProperties']);

/** One readable message from fastify's schema errors; a failed `oneOf` names the forms it wanted. */
function validationMessage(errors: AjvError[], context: string): string {
  const branch = errors.find((e) => e.keyword === 'oneOf' || e.keyword === 'anyOf');
  const e = branch ?? errors[0];
  const where = `${context}${e.instancePath}`;
  if (branch && /\/quer(y|ies)(\/\d+)?$/.test(e.instancePath)) {
    return `${where} must be exactly one of {vector}, {id}, {text}, {positive, negative?} with nothing else`;
  }
  if (e.keyword === 'additionalProperties') return `${where} has an unknown property ${JSON.stringify(e.params?.additionalProperty)}`;
  return `${where} ${e.message ?? 'is invalid'}`;
}

/** Maps anything thrown into the one error format, `{error: {code, message}}`, and a status from errors.ts. */
export function toNearlineError(err: FastifyError | Error, log: FastifyRequest['log']): NearlineError {
  if (isNearlineError(err)) return err;
  const e = err as FastifyError & { validation?: AjvError[]; validationContext?: string };
  if (e.validation) {
    const limit = e.validation.some((v) => LIMIT_KEYWORDS.has(v.keyword));
    return nlError(limit ? 'NL_LIMIT_EXCEEDED' : 'NL_BAD_REQUEST', validationMessage(e.validation, e.validationContext ?? 'body'));
  }
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return nlError('NL_PAYLOAD_TOO_LARGE', 'request body is larger than the server accepts');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return nlError('NL_BAD_REQUEST', 'content-type must be application/json');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return nlError('NL_BAD_REQUEST', 'the JSON body is empty');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return nlError('NL_BAD_REQUEST', 'the body is not valid JSON');
  }
  const status = e.statusCode ?? 500;
  if (status === 413) return nlError('NL_PAYLOAD_TOO_LARGE', 'request body is larger than the server accepts');
  if (status === 404) return nlError('NL_NOT_FOUND', e.message);
  // Body parse failures (bad JSON, __proto__ keys) arrive as 400s without an FST code.
  if (status >= 400 && status < 500) return nlError('NL_BAD_REQUEST', e.message);
  log.error({ err }, 'unexpected error');
  return new NearlineError('NL_INTERNAL', ['internal error; the server log has the details'], { cause: err });
}

/** Sends a coded error: the status from errors.ts, the one body shape, and the headers some codes need. */
export function sendError(reply: FastifyReply, e: NearlineError, metrics: Metrics): FastifyReply {
  metrics.errors.inc({ code: e.code });
  if (e.code === 'NL_OVERLOADED') reply.header('retry-after', '1');
  if (e.code === 'NL_UNAUTHORIZED') reply.header('www-authenticate', 'Bearer');
  if (e.code === 'NL_PROVIDER_ERROR') reply.log.error({ err: e }, 'provider failed');
  return reply.code(e.status).send(e.toJSON());
}

export function installErrorHandlers(app: FastifyInstance, metrics: Metrics): void {
  app.setErrorHandler((err, request, reply) => sendError(reply, toNearlineError(err as FastifyError, request.log), metrics));
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, nlError('NL_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0].slice(0, 200)}`), metrics),
  );
}

/** Errors the router raises before any route runs (bad URL encoding, an over-long parameter): fastify's `frameworkErrors`. */
export function frameworkErrors(metrics: Metrics) {
  return (err: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const e = err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? nlError('NL_LIMIT_EXCEEDED', 'a path parameter is too long') : toNearlineError(err, request.log);
    sendError(reply, e, metrics);
  };
}
