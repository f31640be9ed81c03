import { Type, type Static } from '@sinclair/typebox';
import { errorResponses, featureRef, HTTP_LIMITS, id, onlineValue, recordOf, scalar, text, variantsUsed, vectorJson } from './common.ts';

export const OnlineBody = Type.Object(
  {
    ids: Type.Array(id, { maxItems: HTTP_LIMITS.onlineIds }),
    features: Type.Array(featureRef, { minItems: 1, maxItems: HTTP_LIMITS.features }),
  },
  { additionalProperties: false },
);
export type OnlineBody = Static<typeof OnlineBody>;

export const OnlineResponse = Type.Object({
  rows: Type.Array(Type.Object({ id: Type.String(), features: recordOf(onlineValue) })),
  variants: Type.Optional(variantsUsed),
});
export type OnlineResponse = Static<typeof OnlineResponse>;

export const onlineSchema = {
  summary: 'feature values by id: scalars and vectors, many ids x many features',
  tags: ['serving'],
  body: OnlineBody,
  response: { 200: OnlineResponse, ...errorResponses },
} as const;

export const EmbedBody = Type.Object(
  {
    model: Type.String({ minLength: 3, maxLength: 200, description: 'name@version' }),
    texts: Type.Array(text, { minItems: 1, maxItems: HTTP_LIMITS.embedTexts }),
  },
  { additionalProperties: false },
);
export type EmbedBody = Static<typeof EmbedBody>;

export const EmbedResponse = Type.Object({
  model: Type.String(),
  dims: Type.Integer(),
  vectors: Type.Array(Type.Array(Type.Number())),
});
export type EmbedResponse = Static<typeof EmbedResponse>;

export const embedSchema = {
  summary: 'embed texts with a registered model',
  tags: ['serving'],
  body: EmbedBody,
  response: { 200: EmbedResponse, ...errorResponses },
} as const;

export const FeatureParams = Type.Object({ feature: featureRef });

export const WriteVectorsBody = Type.Object(
  {
    upserts: Type.Optional(
      Type.Array(
        Type.Object(
          {
            id,
            vector: Type.Optional(vectorJson),
            text: Type.Optional(text),
            metadata: Type.Optional(recordOf(scalar)),
          },
          { additionalProperties: false },
        ),
        { maxItems: HTTP_LIMITS.upserts },
      ),
    ),
    deletes: Type.Optional(Type.Array(id, { maxItems: HTTP_LIMITS.deletes })),
  },
  { additionalProperties: false },
);
export type WriteVectorsBody = Static<typeof WriteVectorsBody>;

export const WriteVectorsResponse = Type.Object({
  feature: Type.String(),
  variant: Type.String(),
  upserted: Type.Integer(),
  deleted: Type.Integer(),
  offset: Type.Optional(Type.Integer({ description: "log offset of the write in its source's log" })),
});
export type WriteVectorsResponse = Static<typeof WriteVectorsResponse>;

export const writeVectorsSchema = {
  summary: 'upsert and delete vectors of an embedding feature (scope write); all validated before any is written',
  tags: ['writing'],
  params: FeatureParams,
  body: WriteVectorsBody,
  response: { 200: WriteVectorsResponse, ...errorResponses },
} as const;
