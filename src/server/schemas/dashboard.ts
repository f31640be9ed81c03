import { Type, type Static } from '@sinclair/typebox';
import { errorResponses, HTTP_LIMITS } from './common.ts';

const ref = Type.String({ minLength: 1, maxLength: HTTP_LIMITS.featureRefChars });
const num = Type.Number();

const summaryProps = { count: Type.Integer(), normMean: num, normStd: num, zero: Type.Integer(), duplicates: Type.Integer() };
const Summary = Type.Object(summaryProps);

const Drift = Type.Unsafe<{ centroidDistance: number; normShift: number } | null>({
  type: ['object', 'null'],
  required: ['centroidDistance', 'normShift'],
  properties: { centroidDistance: num, normShift: num },
});

const reportProps = {
  feature: Type.String(),
  variant: Type.String(),
  dims: Type.Integer(),
  status: Type.Union([Type.Literal('ok'), Type.Literal('drifting'), Type.Literal('warming'), Type.Literal('empty')]),
  drifting: Type.Boolean(),
  baseline: Type.Object({ ...summaryProps, centroid: Type.Optional(Type.Array(num, { description: 'per-dimension mean' })) }),
  recent: Summary,
  drift: Drift,
  thresholds: Type.Object({ centroidDistance: Type.Optional(num), normShift: Type.Optional(num), minSamples: Type.Optional(Type.Integer()) }),
  duplicatesTracked: Type.Optional(Type.Boolean()),
  updatedAt: Type.Optional(Type.Unsafe<string | null>({ type: ['string', 'null'] })),
};

export const HealthQuery = Type.Object({ against: Type.Optional(ref) }, { additionalProperties: false });
export type HealthQuery = Static<typeof HealthQuery>;

export const HealthResponse = Type.Object({
  ...reportProps,
  comparison: Type.Optional(
    Type.Object({
      a: Type.Optional(Type.String()),
      b: Type.Optional(Type.String()),
      centroidDistance: Type.Optional(Type.Unsafe<number | null>({ type: ['number', 'null'] })),
      normShift: Type.Optional(num),
      a_stats: Type.Optional(Summary),
      b_stats: Type.Optional(Summary),
    }),
  ),
});
export type HealthResponse = Static<typeof HealthResponse>;

export const healthSchema = {
  summary: "a variant's embedding health: baseline, recent writes, drift",
  description:
    'The baseline is what materialization wrote; `recent` is a sliding window of the writes since. With `against`, also compares all the vectors of two variants.',
  tags: ['dashboard'],
  params: Type.Object({ feature: ref }),
  querystring: HealthQuery,
  response: { 200: HealthResponse, ...errorResponses },
} as const;

export const MapQuery = Type.Object({ refresh: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')])) }, { additionalProperties: false });
export type MapQuery = Static<typeof MapQuery>;

export const MapResponse = Type.Object({
  feature: Type.String(),
  variant: Type.String(),
  rows: Type.Integer(),
  explained: Type.Array(num, { description: 'share of the sample variance along each axis' }),
  fields: Type.Array(Type.String(), { description: 'metadata fields, to colour by' }),
  points: Type.Array(
    Type.Object({
      id: Type.String(),
      x: num,
      y: num,
      metadata: Type.Optional(Type.Unsafe<Record<string, unknown>>({ type: 'object', additionalProperties: true })),
    }),
  ),
  computedAt: Type.String(),
});
export type MapResponse = Static<typeof MapResponse>;

export const mapSchema = {
  summary: "a 2-D map of a variant: PCA of a uniform sample of its vectors, with each point's metadata",
  description: 'Computed on the server and cached per variant until `refresh=true`; the sample is the one embedding health keeps (up to 2,000 ids).',
  tags: ['dashboard'],
  params: Type.Object({ feature: ref }),
  querystring: MapQuery,
  response: { 200: MapResponse, ...errorResponses },
} as const;

export const SeriesResponse = Type.Object({
  intervalSeconds: num,
  times: Type.Array(num),
  series: Type.Array(
    Type.Object({
      key: Type.Optional(Type.String()),
      label: Type.Optional(Type.String()),
      unit: Type.Optional(Type.String()),
      help: Type.Optional(Type.String()),
      values: Type.Optional(Type.Array(Type.Unsafe<number | null>({ type: ['number', 'null'] }))),
    }),
  ),
});
export type SeriesResponse = Static<typeof SeriesResponse>;

export const seriesSchema = {
  summary: "the dashboard's charts: the last half hour of serving, push and process numbers",
  description: 'Sampled from the same families /metrics shows, every few seconds. A value is null where its family is absent or the interval had no event.',
  tags: ['dashboard'],
  response: { 200: SeriesResponse, ...errorResponses },
} as const;
