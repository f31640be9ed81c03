import { errorResponses, HTTP_LIMITS } from './common.ts';

const ref = { type: 'string', minLength: 1, maxLength: HTTP_LIMITS.featureRefChars } as const;
const num = { type: 'number' } as const;

const summary = {
  type: 'object',
  required: ['count', 'normMean', 'normStd', 'zero', 'duplicates'],
  properties: { count: { type: 'integer' }, normMean: num, normStd: num, zero: { type: 'integer' }, duplicates: { type: 'integer' } },
} as const;

const drift = {
  type: ['object', 'null'],
  required: ['centroidDistance', 'normShift'],
  properties: { centroidDistance: num, normShift: num },
} as const;

const report = {
  type: 'object',
  required: ['feature', 'variant', 'dims', 'status', 'drifting', 'baseline', 'recent', 'drift', 'thresholds'],
  properties: {
    feature: { type: 'string' },
    variant: { type: 'string' },
    dims: { type: 'integer' },
    status: { type: 'string', enum: ['ok', 'drifting', 'warming', 'empty'] },
    drifting: { type: 'boolean' },
    baseline: { ...summary, properties: { ...summary.properties, centroid: { type: 'array', items: num, description: 'per-dimension mean' } } },
    recent: summary,
    drift,
    thresholds: {
      type: 'object',
      properties: { centroidDistance: num, normShift: num, minSamples: { type: 'integer' } },
    },
    duplicatesTracked: { type: 'boolean' },
    updatedAt: { type: ['string', 'null'] },
  },
} as const;

export const healthSchema = {
  summary: "a variant's embedding health: baseline, recent writes, drift",
  description:
    'The baseline is what materialization wrote; `recent` is a sliding window of the writes since. With `against`, also compares all the vectors of two variants.',
  tags: ['dashboard'],
  params: { type: 'object', required: ['feature'], properties: { feature: ref } },
  querystring: { type: 'object', properties: { against: ref }, additionalProperties: false },
  response: {
    200: {
      ...report,
      properties: {
        ...report.properties,
        comparison: {
          type: 'object',
          properties: {
            a: { type: 'string' },
            b: { type: 'string' },
            centroidDistance: { type: ['number', 'null'] },
            normShift: num,
            a_stats: summary,
            b_stats: summary,
          },
        },
      },
    },
    ...errorResponses,
  },
} as const;

export const mapSchema = {
  summary: "a 2-D map of a variant: PCA of a uniform sample of its vectors, with each point's metadata",
  description: 'Computed on the server and cached per variant until `refresh=true`; the sample is the one embedding health keeps (up to 2,000 ids).',
  tags: ['dashboard'],
  params: { type: 'object', required: ['feature'], properties: { feature: ref } },
  querystring: { type: 'object', properties: { refresh: { type: 'string', enum: ['true', 'false'] } }, additionalProperties: false },
  response: {
    200: {
      type: 'object',
      required: ['feature', 'variant', 'rows', 'explained', 'fields', 'points', 'computedAt'],
      properties: {
        feature: { type: 'string' },
        variant: { type: 'string' },
        rows: { type: 'integer' },
        explained: { type: 'array', items: num, description: 'share of the sample variance along each axis' },
        fields: { type: 'array', items: { type: 'string' }, description: 'metadata fields, to colour by' },
        points: {
          type: 'array',
          items: {
            type: 'object',
            required: ['id', 'x', 'y'],
            properties: { id: { type: 'string' }, x: num, y: num, metadata: { type: 'object', additionalProperties: true } },
          },
        },
        computedAt: { type: 'string' },
      },
    },
    ...errorResponses,
  },
} as const;

export const seriesSchema = {
  summary: "the dashboard's charts: the last half hour of serving, push and process numbers",
  description: 'Sampled from the same families /metrics shows, every few seconds. A value is null where its family is absent or the interval had no event.',
  tags: ['dashboard'],
  response: {
    200: {
      type: 'object',
      required: ['intervalSeconds', 'times', 'series'],
      properties: {
        intervalSeconds: num,
        times: { type: 'array', items: num },
        series: {
          type: 'array',
          items: {
            type: 'object',
            properties: { key: { type: 'string' }, label: { type: 'string' }, unit: { type: 'string' }, values: { type: 'array', items: { type: ['number', 'null'] } } },
          },
        },
      },
    },
    ...errorResponses,
  },
} as const;
