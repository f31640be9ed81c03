import { errorResponses } from './common.ts';

const name = { type: 'string', minLength: 1, maxLength: 200 } as const;

const feature = {
  type: 'object',
  required: ['name', 'variant', 'kind', 'entity', 'provider', 'status', 'rows'],
  properties: {
    name: { type: 'string' },
    variant: { type: 'string' },
    kind: { type: 'string', enum: ['embedding', 'scalar'] },
    entity: { type: 'string' },
    source: { type: 'object', properties: { name: { type: 'string' }, variant: { type: 'string' } } },
    provider: { type: 'string' },
    vector: { type: 'object', properties: { column: { type: 'string' } } },
    text: {
      type: 'object',
      properties: { column: { type: 'string' }, model: { type: 'object', properties: { name: { type: 'string' }, version: { type: 'string' } } } },
    },
    dims: { type: 'integer' },
    metric: { type: 'string' },
    index: { type: 'object', properties: { M: { type: 'integer' }, efConstruction: { type: 'integer' }, ef: { type: 'integer' } } },
    metadata: { type: 'array', items: { type: 'string' } },
    column: { type: 'string' },
    type: { type: 'string' },
    status: { type: 'string', enum: ['registered', 'materializing', 'materialized', 'failed'] },
    rows: { type: 'integer' },
    createdAt: { type: 'string' },
    materializedAt: { type: ['string', 'null'] },
    aliases: { type: 'array', items: { type: 'string' }, description: 'aliases pointing at this variant' },
  },
} as const;

const model = {
  type: 'object',
  required: ['name', 'version', 'runtime', 'dims', 'sha256'],
  properties: {
    name: { type: 'string' },
    version: { type: 'string' },
    runtime: { type: 'string' },
    hub: { type: 'string' },
    pooling: { type: 'string' },
    normalize: { type: 'boolean' },
    maxTokens: { type: 'integer' },
    dims: { type: 'integer' },
    sha256: { type: 'string' },
    createdAt: { type: 'string' },
  },
} as const;

const alias = {
  type: 'object',
  required: ['feature', 'name', 'variant'],
  properties: { feature: { type: 'string' }, name: { type: 'string' }, variant: { type: 'string' }, updatedAt: { type: 'string' } },
} as const;

const list = (what: string, item: object) =>
  ({
    summary: `list ${what}`,
    tags: ['registry'],
    response: { 200: { type: 'object', required: [what], properties: { [what]: { type: 'array', items: item } } }, ...errorResponses },
  }) as const;

const byName = (what: string, item: object, description: string) =>
  ({
    summary: `${what} named NAME: ${description}`,
    tags: ['registry'],
    params: { type: 'object', required: ['name'], properties: { name } },
    response: { 200: { type: 'object', required: [what], properties: { [what]: { type: 'array', items: item } } }, ...errorResponses },
  }) as const;

const event = {
  type: 'object',
  required: ['id', 'at', 'actor', 'action', 'kind', 'name'],
  properties: {
    id: { type: 'integer' },
    at: { type: 'string' },
    actor: { type: 'string', description: 'key:<id> over HTTP, user:<name> from the CLI, anonymous while the server has no key' },
    action: { type: 'string' },
    kind: { type: 'string' },
    name: { type: 'string' },
    feature: { type: ['string', 'null'] },
    detail: { type: ['object', 'null'], additionalProperties: true },
  },
} as const;

const history = {
  summary: 'registry changes, newest first: what, when and by whom',
  description:
    'Scope serve. A feature-limited key sees only changes to its features; changes to API keys are shown to admin keys (and while the server has no key).',
  tags: ['registry'],
  querystring: {
    type: 'object',
    properties: {
      feature: name,
      // Query strings are text, and the server does not coerce types: digits, checked by the route.
      limit: { type: 'string', pattern: '^[0-9]{1,4}$', description: 'events per page, 1 to 1000 (default 100)' },
      before: { type: 'string', pattern: '^[0-9]{1,15}$', description: 'only events older than this id (paging)' },
    },
    additionalProperties: false,
  },
  response: { 200: { type: 'object', required: ['events'], properties: { events: { type: 'array', items: event } } }, ...errorResponses },
} as const;

export const registrySchemas = {
  history,
  features: list('features', feature),
  feature: byName('features', feature, 'every variant, oldest first'),
  models: list('models', model),
  model: byName('models', model, 'every version'),
  aliases: list('aliases', alias),
  alias: byName('aliases', alias, "the feature's aliases"),
};
