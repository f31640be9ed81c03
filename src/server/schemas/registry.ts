import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { errorResponses } from './common.ts';

const name = Type.String({ minLength: 1, maxLength: 200 });

const str = () => Type.Optional(Type.String());

export const FeatureInfo = Type.Object({
  name: Type.String(),
  variant: Type.String(),
  kind: Type.Union([Type.Literal('embedding'), Type.Literal('scalar')]),
  entity: Type.String(),
  source: Type.Optional(Type.Object({ name: str(), variant: str() })),
  provider: Type.String(),
  vector: Type.Optional(Type.Object({ column: str() })),
  text: Type.Optional(Type.Object({ column: str(), model: Type.Optional(Type.Object({ name: str(), version: str() })) })),
  dims: Type.Optional(Type.Integer()),
  metric: str(),
  index: Type.Optional(
    Type.Object({
      M: Type.Optional(Type.Integer()),
      efConstruction: Type.Optional(Type.Integer()),
      ef: Type.Optional(Type.Integer()),
      quantization: Type.Optional(Type.Literal('int8', { description: 'int8 vectors in the graph, full precision on disk; absent: none' })),
    }),
  ),
  metadata: Type.Optional(Type.Array(Type.String())),
  column: str(),
  type: str(),
  status: Type.Union([Type.Literal('registered'), Type.Literal('materializing'), Type.Literal('materialized'), Type.Literal('failed')]),
  rows: Type.Integer(),
  createdAt: str(),
  materializedAt: Type.Optional(Type.Unsafe<string | null>({ type: ['string', 'null'] })),
  aliases: Type.Optional(Type.Array(Type.String(), { description: 'aliases pointing at this variant' })),
});
export type FeatureInfo = Static<typeof FeatureInfo>;

export const ModelInfo = Type.Object({
  name: Type.String(),
  version: Type.String(),
  runtime: Type.String(),
  hub: str(),
  pooling: str(),
  normalize: Type.Optional(Type.Boolean()),
  maxTokens: Type.Optional(Type.Integer()),
  dims: Type.Integer(),
  sha256: Type.String(),
  createdAt: str(),
});
export type ModelInfo = Static<typeof ModelInfo>;

export const AliasInfo = Type.Object({ feature: Type.String(), name: Type.String(), variant: Type.String(), updatedAt: str() });
export type AliasInfo = Static<typeof AliasInfo>;

export const FeaturesResponse = Type.Object({ features: Type.Array(FeatureInfo) });
export type FeaturesResponse = Static<typeof FeaturesResponse>;
export const ModelsResponse = Type.Object({ models: Type.Array(ModelInfo) });
export type ModelsResponse = Static<typeof ModelsResponse>;
export const AliasesResponse = Type.Object({ aliases: Type.Array(AliasInfo) });
export type AliasesResponse = Static<typeof AliasesResponse>;

const list = <T extends TSchema>(what: string, response: T) =>
  ({ summary: `list ${what}`, tags: ['registry'], response: { 200: response, ...errorResponses } }) as const;

const byName = <T extends TSchema>(what: string, response: T, description: string) =>
  ({
    summary: `${what} named NAME: ${description}`,
    tags: ['registry'],
    params: Type.Object({ name }),
    response: { 200: response, ...errorResponses },
  }) as const;

export const RegistryEvent = Type.Object({
  id: Type.Integer(),
  at: Type.String(),
  actor: Type.String({ description: 'key:<id> over HTTP, user:<name> from the CLI, anonymous while the server has no key' }),
  action: Type.String(),
  kind: Type.String(),
  name: Type.String(),
  feature: Type.Optional(Type.Unsafe<string | null>({ type: ['string', 'null'] })),
  detail: Type.Optional(Type.Unsafe<Record<string, unknown> | null>({ type: ['object', 'null'], additionalProperties: true })),
});
export type RegistryEvent = Static<typeof RegistryEvent>;

export const HistoryQuery = Type.Object(
  {
    feature: Type.Optional(name),
    // Query strings are text, and the server does not coerce types: digits, checked by the route.
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$', description: 'events per page, 1 to 1000 (default 100)' })),
    before: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: 'only events older than this id (paging)' })),
  },
  { additionalProperties: false },
);
export type HistoryQuery = Static<typeof HistoryQuery>;

export const HistoryResponse = Type.Object({ events: Type.Array(RegistryEvent) });
export type HistoryResponse = Static<typeof HistoryResponse>;

const history = {
  summary: 'registry changes, newest first: what, when and by whom',
  description:
    'Scope serve. A feature-limited key sees only changes to its features; changes to API keys are shown to admin keys (and while the server has no key).',
  tags: ['registry'],
  querystring: HistoryQuery,
  response: { 200: HistoryResponse, ...errorResponses },
} as const;

export const registrySchemas = {
  history,
  features: list('features', FeaturesResponse),
  feature: byName('features', FeaturesResponse, 'every variant, oldest first'),
  models: list('models', ModelsResponse),
  model: byName('models', ModelsResponse, 'every version'),
  aliases: list('aliases', AliasesResponse),
  alias: byName('aliases', AliasesResponse, "the feature's aliases"),
};
