import { Type, type Static } from '@sinclair/typebox';
import { errorResponses, featureRef, HTTP_LIMITS } from './common.ts';
import { Query } from './nearest.ts';

const gate = Type.String({
  minLength: 1,
  maxLength: 500,
  description: 'conditions over the comparison, e.g. `overlap>=0.6,recall>=0.95` (overlap, recall, rank_correlation)',
});
const sample = Type.Integer({ minimum: 1, maximum: 100_000, description: 'entities held by both variants, each queried by id in both (default 1000)' });
const queries = Type.Array(Query, { minItems: 1, maxItems: 10_000, description: 'query objects run on both variants instead of a sample' });
const k = Type.Integer({ minimum: 1, maximum: HTTP_LIMITS.maxK, default: 10 });

const Norms = Type.Object({ mean: Type.Number(), std: Type.Number(), min: Type.Number(), max: Type.Number() });

export const CompareReport = Type.Object({
  a: Type.String(),
  b: Type.String(),
  k: Type.Integer(),
  mode: Type.Union([Type.Literal('sample'), Type.Literal('queries')]),
  queries: Type.Integer(),
  overlap: Type.Number({ description: 'mean |top-k(A) ∩ top-k(B)| / k' }),
  recall: Type.Number({ description: "mean recall@k of B's index against an exact scan of B" }),
  rank_correlation: Type.Union([Type.Number(), Type.Null()], { description: 'mean Spearman correlation over the hits both share' }),
  norms: Type.Union([Type.Object({ a: Norms, b: Norms }), Type.Null()]),
});
export type CompareReport = Static<typeof CompareReport>;

export const CompareBody = Type.Object(
  { a: featureRef, b: featureRef, k: Type.Optional(k), sample: Type.Optional(sample), queries: Type.Optional(queries), gate: Type.Optional(gate) },
  { additionalProperties: false },
);
export type CompareBody = Static<typeof CompareBody>;

export const CompareResponse = Type.Composite([
  CompareReport,
  Type.Object({ gate: Type.Optional(Type.Object({ passed: Type.Boolean(), failed: Type.Array(Type.String()) })) }),
]);
export type CompareResponse = Static<typeof CompareResponse>;

export const compareSchema = {
  summary: 'compare two variants of a feature (scope admin): overlap@k, recall@k against an exact scan, rank correlation, norms',
  tags: ['lifecycle'],
  body: CompareBody,
  response: { 200: CompareResponse, ...errorResponses },
} as const;

const name = Type.String({ minLength: 1, maxLength: 64 });
export const AliasParams = Type.Object({ feature: name, alias: name });
export type AliasParams = Static<typeof AliasParams>;

export const AliasMoveBody = Type.Object(
  {
    variant: name,
    force: Type.Optional(Type.Boolean({ description: 'allow a variant that is not materialized or holds no rows' })),
    gate: Type.Optional(gate),
    sample: Type.Optional(sample),
    queries: Type.Optional(queries),
    k: Type.Optional(k),
  },
  { additionalProperties: false },
);
export type AliasMoveBody = Static<typeof AliasMoveBody>;

export const AliasMoveResponse = Type.Object({
  feature: Type.String(),
  alias: Type.String(),
  variant: Type.String(),
  previous: Type.Union([Type.String(), Type.Null()]),
  report: Type.Optional(CompareReport),
});
export type AliasMoveResponse = Static<typeof AliasMoveResponse>;

export const aliasMoveSchema = {
  summary:
    'point an alias at a variant (scope admin); with a gate, only if the comparison with its current variant passes (409 NL_GATE_FAILED otherwise, alias unchanged)',
  tags: ['lifecycle'],
  params: AliasParams,
  body: AliasMoveBody,
  response: { 200: AliasMoveResponse, ...errorResponses },
} as const;

export const aliasRollbackSchema = {
  summary: 'move an alias back to the variant it named before its last move (scope admin)',
  tags: ['lifecycle'],
  params: AliasParams,
  response: { 200: AliasMoveResponse, ...errorResponses },
} as const;
