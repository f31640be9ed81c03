/**
 * Generates a small BERT-style text encoder in Hugging Face layout (config.json, tokenizer.json,
 * tokenizer_config.json, onnx/model.onnx) with deterministic weights. The weights are random, so the
 * vectors mean nothing; the model exercises the runtimes, and at a real model's shape it benchmarks them,
 * since throughput does not depend on the weight values.
 *
 *   npm run make:encoder -- --out models/tiny-bert --layers 2 --hidden 32 --heads 2 --ffn 64 --vocab 1000 --seed 1
 *
 * The ONNX protobuf is written by hand (a few message types of onnx.proto) so that nothing but Node is needed.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { mulberry32 as rng } from './random.ts';

export interface EncoderOptions {
  /** Output folder; created if missing. */
  out: string;
  /** Transformer layers. Default 2. */
  layers?: number;
  /** Hidden size. Default 32. */
  hidden?: number;
  /** Attention heads; must divide hidden. Default 2. */
  heads?: number;
  /** Feed-forward inner size. Default 4 * hidden. */
  ffn?: number;
  /** Vocabulary size, special tokens included. Default 1000. */
  vocab?: number;
  /** Position embeddings, i.e. the longest input in tokens. Default 512. */
  maxPositions?: number;
  /** Weight seed. Default 1. */
  seed?: number;
  /** Whether the graph takes token_type_ids, as BERT does (DistilBERT-style graphs do not). Default true. */
  tokenTypes?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Protobuf wire format, just enough of it for onnx.proto.

class Writer {
  private chunks: Uint8Array[] = [];
  private size = 0;

  private push(bytes: Uint8Array): this {
    this.chunks.push(bytes);
    this.size += bytes.length;
    return this;
  }

  private varint(value: bigint): this {
    // Negative int64 values are encoded as their 64-bit two's complement (10 bytes), as protobuf does.
    let v = BigInt.asUintN(64, value);
    const out: number[] = [];
    while (v >= 0x80n) {
      out.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    out.push(Number(v));
    return this.push(Uint8Array.from(out));
  }

  private tag(field: number, wire: number): this {
    return this.varint(BigInt((field << 3) | wire));
  }

  int(field: number, value: number | bigint): this {
    return this.tag(field, 0).varint(BigInt(value));
  }

  float(field: number, value: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    return this.tag(field, 5).push(b);
  }

  bytes(field: number, value: Uint8Array): this {
    return this.tag(field, 2).varint(BigInt(value.length)).push(value);
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, w: Writer): this {
    return this.bytes(field, w.finish());
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

const FLOAT = 1;
const INT64 = 7;

type Attr = number | number[] | { floats: number[] } | { float: number };

interface Node {
  op: string;
  inputs: string[];
  outputs: string[];
  attrs?: Record<string, Attr>;
}

interface Tensor {
  name: string;
  dims: number[];
  type: typeof FLOAT | typeof INT64;
  data: Float32Array | BigInt64Array;
}

function tensorProto(t: Tensor): Writer {
  const w = new Writer();
  for (const d of t.dims) w.int(1, d);
  w.int(2, t.type);
  w.string(8, t.name);
  // ONNX raw_data is little-endian, like every platform Node runs on.
  w.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  return w;
}

function attributeProto(name: string, value: Attr): Writer {
  const w = new Writer().string(1, name);
  if (typeof value === 'number') return w.int(3, value).int(20, 2);
  if (Array.isArray(value)) {
    for (const v of value) w.int(8, v);
    return w.int(20, 7);
  }
  if ('float' in value) return w.float(2, value.float).int(20, 1);
  for (const v of value.floats) w.float(7, v);
  return w.int(20, 6);
}

function valueInfo(name: string, elemType: number, dims: (number | string)[]): Writer {
  const shape = new Writer();
  for (const d of dims) shape.message(1, typeof d === 'number' ? new Writer().int(1, d) : new Writer().string(2, d));
  const tensorType = new Writer().int(1, elemType).message(2, shape);
  return new Writer().string(1, name).message(2, new Writer().message(1, tensorType));
}

function modelProto(nodes: Node[], initializers: Tensor[], inputs: Writer[], outputs: Writer[]): Uint8Array {
  const graph = new Writer();
  nodes.forEach((n, i) => {
    const node = new Writer();
    for (const x of n.inputs) node.string(1, x);
    for (const y of n.outputs) node.string(2, y);
    node.string(3, `${n.op}_${i}`).string(4, n.op);
    for (const [k, v] of Object.entries(n.attrs ?? {})) node.message(5, attributeProto(k, v));
    graph.message(1, node);
  });
  graph.string(2, 'encoder');
  for (const t of initializers) graph.message(5, tensorProto(t));
  for (const x of inputs) graph.message(11, x);
  for (const y of outputs) graph.message(12, y);
  // IR version 8 pairs with opset 17, the first opset with LayerNormalization.
  return new Writer().int(1, 8).string(2, 'nearline make-encoder').string(3, '1').message(7, graph).message(8, new Writer().string(1, '').int(2, 17)).finish();
}

// ---------------------------------------------------------------------------------------------
// Deterministic weights.

function normal(rand: () => number, n: number, std: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(rand(), 1e-12);
    const v = rand();
    const r = Math.sqrt(-2 * Math.log(u)) * std;
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The graph: BERT's encoder, written the way exporters write it so onnxruntime's fusions apply.

function buildGraph(o: Required<EncoderOptions>): Uint8Array {
  const { layers, hidden, heads, ffn, vocab, maxPositions, seed, tokenTypes } = o;
  const headDim = hidden / heads;
  const rand = rng(seed);
  const nodes: Node[] = [];
  const inits: Tensor[] = [];
  const weight = (name: string, dims: number[], std: number): string => {
    inits.push({
      name,
      dims,
      type: FLOAT,
      data: normal(
        rand,
        dims.reduce((a, b) => a * b, 1),
        std,
      ),
    });
    return name;
  };
  const constant = (name: string, dims: number[], values: number[]): string => {
    inits.push({ name, dims, type: FLOAT, data: Float32Array.from(values) });
    return name;
  };
  const ints = (name: string, values: number[]): string => {
    inits.push({ name, dims: [values.length], type: INT64, data: BigInt64Array.from(values.map(BigInt)) });
    return name;
  };
  const scalarInt = (name: string, value: number): string => {
    inits.push({ name, dims: [], type: INT64, data: BigInt64Array.of(BigInt(value)) });
    return name;
  };
  const op = (opType: string, inputs: string[], output: string, attrs?: Record<string, Attr>): string => {
    nodes.push({ op: opType, inputs, outputs: [output], attrs });
    return output;
  };
  const ones = (n: number) => new Array<number>(n).fill(1);
  const zeros = (n: number) => new Array<number>(n).fill(0);
  const layerNorm = (x: string, prefix: string): string =>
    op('LayerNormalization', [x, constant(`${prefix}.gamma`, [hidden], ones(hidden)), constant(`${prefix}.beta`, [hidden], zeros(hidden))], `${prefix}.out`, {
      axis: -1,
      epsilon: { float: 1e-12 },
    });
  const linear = (x: string, prefix: string, nIn: number, nOut: number): string => {
    const y = op('MatMul', [x, weight(`${prefix}.weight`, [nIn, nOut], 1 / Math.sqrt(nIn))], `${prefix}.mm`);
    return op('Add', [y, weight(`${prefix}.bias`, [nOut], 0.02)], `${prefix}.out`);
  };

  // Embeddings: word + position + token type, then LayerNorm.
  const words = op('Gather', [weight('embeddings.word', [vocab, hidden], 1), 'input_ids'], 'emb.words');
  const shape = op('Shape', ['input_ids'], 'emb.shape');
  const seqLen = op('Gather', [shape, scalarInt('const.one_index', 1)], 'emb.seq_len', { axis: 0 });
  const positionIds = op('Range', [scalarInt('const.zero', 0), seqLen, scalarInt('const.one', 1)], 'emb.position_ids');
  const positions = op('Gather', [weight('embeddings.position', [maxPositions, hidden], 0.5), positionIds], 'emb.positions');
  let sum = op('Add', [words, positions], 'emb.sum1');
  if (tokenTypes) {
    const types = op('Gather', [weight('embeddings.token_type', [2, hidden], 0.5), 'token_type_ids'], 'emb.types');
    sum = op('Add', [sum, types], 'emb.sum2');
  }
  let x = layerNorm(sum, 'emb.ln');

  // Additive mask: 0 where attended, -10000 at padding, broadcast over heads and query positions.
  // exp(-10000) is exactly 0 in float32, so padding cannot change a text's vector.
  const maskF = op('Cast', ['attention_mask'], 'mask.float', { to: FLOAT });
  const inverted = op('Sub', [constant('const.onef', [], [1]), maskF], 'mask.inverted');
  const scaled = op('Mul', [inverted, constant('const.neg', [], [-10000])], 'mask.scaled');
  const mask = op('Unsqueeze', [scaled, ints('const.axes12', [1, 2])], 'mask.out');

  const splitHeads = ints('const.split_heads', [0, 0, heads, headDim]);
  const mergeHeads = ints('const.merge_heads', [0, 0, hidden]);
  const scale = constant('const.scale', [], [1 / Math.sqrt(headDim)]);
  for (let l = 0; l < layers; l++) {
    const p = `layer${l}`;
    const heads4 = (name: string, perm: number[]) =>
      op('Transpose', [op('Reshape', [linear(x, `${p}.${name}`, hidden, hidden), splitHeads], `${p}.${name}.split`)], `${p}.${name}.t`, { perm });
    const q = heads4('query', [0, 2, 1, 3]);
    const k = heads4('key', [0, 2, 3, 1]);
    const v = heads4('value', [0, 2, 1, 3]);
    const scores = op('Add', [op('Mul', [op('MatMul', [q, k], `${p}.qk`), scale], `${p}.qk_scaled`), mask], `${p}.scores`);
    const probs = op('Softmax', [scores], `${p}.probs`, { axis: -1 });
    const context = op('Transpose', [op('MatMul', [probs, v], `${p}.context`)], `${p}.context.t`, { perm: [0, 2, 1, 3] });
    const merged = op('Reshape', [context, mergeHeads], `${p}.context.merged`);
    const attn = linear(merged, `${p}.attn_out`, hidden, hidden);
    x = layerNorm(op('Add', [attn, x], `${p}.attn_residual`), `${p}.attn_ln`);

    // GELU, exact form: 0.5 * h * (1 + erf(h / sqrt(2))).
    const h = linear(x, `${p}.ffn_in`, hidden, ffn);
    const erf = op('Erf', [op('Div', [h, constant(`${p}.sqrt2`, [], [Math.SQRT2])], `${p}.gelu.div`)], `${p}.gelu.erf`);
    const gelu = op(
      'Mul',
      [op('Mul', [h, op('Add', [erf, constant(`${p}.onef`, [], [1])], `${p}.gelu.add`)], `${p}.gelu.mul`), constant(`${p}.half`, [], [0.5])],
      `${p}.gelu.out`,
    );
    const out = linear(gelu, `${p}.ffn_out`, ffn, hidden);
    x = layerNorm(op('Add', [out, x], `${p}.ffn_residual`), `${p}.ffn_ln`);
  }
  op('Identity', [x], 'last_hidden_state');

  const ids = (name: string) => valueInfo(name, INT64, ['batch_size', 'sequence_length']);
  return modelProto(
    nodes,
    inits,
    [ids('input_ids'), ids('attention_mask'), ...(tokenTypes ? [ids('token_type_ids')] : [])],
    [valueInfo('last_hidden_state', FLOAT, ['batch_size', 'sequence_length', hidden])],
  );
}

// ---------------------------------------------------------------------------------------------
// WordPiece vocabulary and tokenizer.json.

const SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];

// Common English words, so that ordinary text tokenizes to about one token per word, as with a real vocabulary.
const WORDS = `the of and to a in is it you that he was for on are with as i his they be at one have this from
or had by not word but what some we can out other were all there when up use your how said an each she which do
their time if will way about many then them write would like so these her long make thing see him two has look
more day could go come did number sound no most people my over know water than call first who may down side been
now find any new work part take get place made live where after back little only round man year came show every
good me give our under name very through just form sentence great think say help low line differ turn cause much
mean before move right boy old too same tell does set three want air well also play small end put home read hand
port large spell add even land here must big high such follow act why ask men change went light kind off need house
picture try us again animal point mother world near build self earth father head stand own page should country found
answer school grow study still learn plant cover food sun four between state keep eye never last let thought city
tree cross farm hard start might story saw far sea draw left late run while press close night real life few north
open seem together next white children begin got walk example ease paper group always music those both mark often
letter until mile river car feet care second book carry took science eat room friend began idea fish mountain stop
once base hear horse cut sure watch color face wood main enough plain girl usual young ready above ever red list
though feel talk bird soon body dog family direct pose leave song measure door product black short numeral class wind
question happen complete ship area half rock order fire south problem piece told knew pass since top whole king space
heard best hour better true during hundred five remember step early hold west ground interest reach fast verb sing
listen six table travel less morning ten simple several vowel toward war lay against pattern slow center love person
money serve appear road map rain rule govern pull cold notice voice unit power town fine certain fly fall lead cry
dark machine note wait plan figure star box noun field rest correct able pound done beauty drive stood contain front
teach week final gave green oh quick develop ocean warm free minute strong special mind behind clear tail produce fact
street inch multiply nothing course stay wheel full force blue object decide surface deep moon island foot system busy
test record boat common gold possible plane stead dry wonder laugh thousand ago ran check game shape equate hot miss
brought heat snow tire bring yes distant fill east paint language among market price stock bank sale buy sell cheap
customer order item user movie film song album search query vector model feature store data table index server fast
slow price review rating share news report sport team player coach match season league cat kitten puppy mat rug sat`
  .split(/\s+/)
  .filter(Boolean);

function buildVocab(size: number): string[] {
  const letters = 'abcdefghijklmnopqrstuvwxyz';
  const chars = [...letters, ...'0123456789', ...'!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~'];
  const vocab: string[] = [...SPECIALS];
  const seen = new Set(vocab);
  const add = (t: string) => {
    if (vocab.length < size && !seen.has(t)) {
      seen.add(t);
      vocab.push(t);
    }
  };
  // Characters and continuation characters first: with them every lowercase ASCII word tokenizes without [UNK].
  for (const c of chars) add(c);
  for (const c of [...letters, ...'0123456789']) add(`##${c}`);
  for (const w of WORDS) add(w);
  for (const a of letters) for (const b of letters) add(`##${a}${b}`);
  for (const a of letters) for (const b of letters) add(`${a}${b}`);
  for (const a of letters) for (const b of letters) for (const c of letters) add(`##${a}${b}${c}`);
  for (const a of letters) for (const b of letters) for (const c of letters) add(`${a}${b}${c}`);
  for (let i = 0; vocab.length < size; i++) add(`[unused${i}]`);
  if (vocab.length < size) throw new Error(`cannot build a vocabulary of ${size} tokens`);
  return vocab;
}

function tokenizerJson(vocab: string[]): unknown {
  const id = (t: string) => vocab.indexOf(t);
  const special = (t: string) => ({ id: t, ids: [id(t)], tokens: [t] });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map((content) => ({
      id: id(content),
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } },
        { SpecialToken: { id: '[SEP]', type_id: 1 } },
      ],
      special_tokens: { '[CLS]': special('[CLS]'), '[SEP]': special('[SEP]') },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(vocab.map((t, i) => [t, i])),
    },
  };
}

/** Writes the encoder folder and returns its absolute path. */
export function makeEncoder(options: EncoderOptions): string {
  const hidden = options.hidden ?? 32;
  const o: Required<EncoderOptions> = {
    out: resolve(options.out),
    layers: options.layers ?? 2,
    hidden,
    heads: options.heads ?? 2,
    ffn: options.ffn ?? 4 * hidden,
    vocab: options.vocab ?? 1000,
    maxPositions: options.maxPositions ?? 512,
    seed: options.seed ?? 1,
    tokenTypes: options.tokenTypes ?? true,
  };
  if (o.hidden % o.heads !== 0) throw new Error(`hidden (${o.hidden}) must be a multiple of heads (${o.heads})`);
  const vocab = buildVocab(o.vocab);
  mkdirSync(join(o.out, 'onnx'), { recursive: true });
  writeFileSync(join(o.out, 'onnx', 'model.onnx'), buildGraph(o));
  writeFileSync(join(o.out, 'tokenizer.json'), JSON.stringify(tokenizerJson(vocab)));
  writeFileSync(
    join(o.out, 'tokenizer_config.json'),
    JSON.stringify(
      {
        tokenizer_class: 'BertTokenizer',
        do_lower_case: true,
        model_max_length: o.maxPositions,
        cls_token: '[CLS]',
        sep_token: '[SEP]',
        pad_token: '[PAD]',
        unk_token: '[UNK]',
        mask_token: '[MASK]',
        clean_up_tokenization_spaces: true,
      },
      null,
      2,
    ),
  );
  writeFileSync(
    join(o.out, 'config.json'),
    JSON.stringify(
      {
        model_type: 'bert',
        architectures: ['BertModel'],
        vocab_size: o.vocab,
        hidden_size: o.hidden,
        num_hidden_layers: o.layers,
        num_attention_heads: o.heads,
        intermediate_size: o.ffn,
        hidden_act: 'gelu',
        max_position_embeddings: o.maxPositions,
        type_vocab_size: o.tokenTypes ? 2 : 0,
        layer_norm_eps: 1e-12,
        pad_token_id: 0,
      },
      null,
      2,
    ),
  );
  return o.out;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: 'models/tiny-bert' },
      layers: { type: 'string' },
      hidden: { type: 'string' },
      heads: { type: 'string' },
      ffn: { type: 'string' },
      vocab: { type: 'string' },
      'max-positions': { type: 'string' },
      seed: { type: 'string' },
      'no-token-types': { type: 'boolean' },
    },
  });
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const started = performance.now();
  const out = makeEncoder({
    out: values.out!,
    layers: num(values.layers),
    hidden: num(values.hidden),
    heads: num(values.heads),
    ffn: num(values.ffn),
    vocab: num(values.vocab),
    maxPositions: num(values['max-positions']),
    seed: num(values.seed),
    tokenTypes: !values['no-token-types'],
  });
  console.log(`wrote ${out} in ${Math.round(performance.now() - started)} ms`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
