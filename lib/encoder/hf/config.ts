/**
 * The model definition of a Hugging Face decoder reward model (Llama-3.x and Qwen3
 * sequence classifiers): `config.json` -> the sizes, norms, rotary embedding and the
 * names of every weight tensor. Engines build their network from this and nothing else.
 */
import { FormatError } from "../../errors.ts";

/** Rotary embedding settings: the default schedule, or Llama-3.1's frequency-band scaling. */
export type RopeSpec =
  | { type: "default"; theta: number }
  | {
    type: "llama3";
    theta: number;
    factor: number;
    lowFreqFactor: number;
    highFreqFactor: number;
    originalMaxPositions: number;
  };

/** What a decoder-only reward model is made of. */
export interface DecoderSpec {
  family: "llama" | "qwen3";
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  rmsEps: number;
  rope: RopeSpec;
  maxPositions: number;
  /** Qwen3: RMSNorm of each query and key head before the rotary embedding */
  qkNorm: boolean;
  attentionBias: boolean;
  mlpBias: boolean;
  /** the classifier's pad id, when the config names one */
  padTokenId?: number;
  /** `_name_or_path`, else the folder */
  name: string;
}

const num = (file: string, cfg: Record<string, unknown>, key: string, fallback?: number): number => {
  const v = cfg[key] ?? fallback;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new FormatError(file, `'${key}' must be a number (found ${JSON.stringify(cfg[key])})`);
  }
  return v;
};
const int = (file: string, cfg: Record<string, unknown>, key: string, fallback?: number): number => {
  const v = num(file, cfg, key, fallback);
  if (!Number.isInteger(v) || v <= 0) throw new FormatError(file, `'${key}' must be a positive integer (found ${v})`);
  return v;
};

/**
 * Reads the rotary settings in both spellings transformers has written: 4.x's
 * `rope_theta` + `rope_scaling`, and 5.x's `rope_parameters`.
 */
function ropeOf(file: string, cfg: Record<string, unknown>, defaultTheta: number): RopeSpec {
  const params = (cfg.rope_parameters ?? cfg.rope_scaling ?? {}) as Record<string, unknown>;
  if (typeof params !== "object" || params === null) throw new FormatError(file, "'rope_parameters' must be an object");
  const theta = num(file, { t: params.rope_theta ?? cfg.rope_theta ?? defaultTheta }, "t");
  const type = String(params.rope_type ?? params.type ?? "default");
  if (type === "default") return { type, theta };
  if (type === "llama3") {
    return {
      type,
      theta,
      factor: num(file, params, "factor"),
      lowFreqFactor: num(file, params, "low_freq_factor"),
      highFreqFactor: num(file, params, "high_freq_factor"),
      originalMaxPositions: int(file, params, "original_max_position_embeddings"),
    };
  }
  throw new FormatError(file, `rope type '${type}' is not supported (supported: default, llama3)`);
}

/** Parses `config.json` of a Llama-3.x or Qwen3 model; refuses what the engines cannot run. */
export function parseDecoderConfig(file: string, text: string, folder = file): DecoderSpec {
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(text);
  } catch (e) {
    throw new FormatError(file, `not valid JSON (${(e as Error).message})`);
  }
  if (!cfg || typeof cfg !== "object") throw new FormatError(file, "expected a JSON object");
  const type = cfg.model_type;
  if (type !== "llama" && type !== "qwen3") {
    throw new FormatError(file, `model_type ${JSON.stringify(type)} is not supported (supported: llama, qwen3)`);
  }
  const act = cfg.hidden_act ?? "silu";
  if (act !== "silu") throw new FormatError(file, `hidden_act '${act}' is not supported (expected silu)`);
  const labels = cfg.id2label ? Object.keys(cfg.id2label as object).length : (cfg.num_labels ?? 1);
  if (labels !== 1) throw new FormatError(file, `a reward model has one label; this config has ${labels}`);
  if (type === "qwen3" && cfg.use_sliding_window === true) {
    throw new FormatError(file, "use_sliding_window is true; only full attention is supported");
  }
  const hidden = int(file, cfg, "hidden_size");
  const heads = int(file, cfg, "num_attention_heads");
  const kvHeads = int(file, cfg, "num_key_value_heads", heads);
  if (heads % kvHeads !== 0) {
    throw new FormatError(
      file,
      `num_attention_heads (${heads}) must be a multiple of num_key_value_heads (${kvHeads})`,
    );
  }
  const headDim = cfg.head_dim == null ? hidden / heads : int(file, cfg, "head_dim");
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new FormatError(file, `head_dim ${headDim} must be an even integer`);
  }
  const pad = cfg.pad_token_id;
  return {
    family: type,
    vocab: int(file, cfg, "vocab_size"),
    hidden,
    layers: int(file, cfg, "num_hidden_layers"),
    heads,
    kvHeads,
    headDim,
    intermediate: int(file, cfg, "intermediate_size"),
    rmsEps: num(file, cfg, "rms_norm_eps", 1e-6),
    rope: ropeOf(file, cfg, type === "qwen3" ? 1e6 : 1e4),
    maxPositions: int(file, cfg, "max_position_embeddings"),
    qkNorm: type === "qwen3",
    attentionBias: cfg.attention_bias === true,
    mlpBias: cfg.mlp_bias === true,
    padTokenId: typeof pad === "number" ? pad : undefined,
    name: typeof cfg._name_or_path === "string" && cfg._name_or_path ? cfg._name_or_path : folder,
  };
}

/** One weight tensor the network needs: its checkpoint name and expected shape. */
export interface WeightName {
  name: string;
  shape: number[];
}

/** The names and shapes of one decoder layer's weights, in transformers' naming. */
export function layerWeights(s: DecoderSpec, i: number): Record<string, WeightName> {
  const p = `model.layers.${i}`;
  const q = s.heads * s.headDim, kv = s.kvHeads * s.headDim;
  const w: Record<string, WeightName> = {
    inputNorm: { name: `${p}.input_layernorm.weight`, shape: [s.hidden] },
    q: { name: `${p}.self_attn.q_proj.weight`, shape: [q, s.hidden] },
    k: { name: `${p}.self_attn.k_proj.weight`, shape: [kv, s.hidden] },
    v: { name: `${p}.self_attn.v_proj.weight`, shape: [kv, s.hidden] },
    o: { name: `${p}.self_attn.o_proj.weight`, shape: [s.hidden, q] },
    postNorm: { name: `${p}.post_attention_layernorm.weight`, shape: [s.hidden] },
    gate: { name: `${p}.mlp.gate_proj.weight`, shape: [s.intermediate, s.hidden] },
    up: { name: `${p}.mlp.up_proj.weight`, shape: [s.intermediate, s.hidden] },
    down: { name: `${p}.mlp.down_proj.weight`, shape: [s.hidden, s.intermediate] },
  };
  if (s.qkNorm) {
    w.qNorm = { name: `${p}.self_attn.q_norm.weight`, shape: [s.headDim] };
    w.kNorm = { name: `${p}.self_attn.k_norm.weight`, shape: [s.headDim] };
  }
  if (s.attentionBias) {
    w.qBias = { name: `${p}.self_attn.q_proj.bias`, shape: [q] };
    w.kBias = { name: `${p}.self_attn.k_proj.bias`, shape: [kv] };
    w.vBias = { name: `${p}.self_attn.v_proj.bias`, shape: [kv] };
    w.oBias = { name: `${p}.self_attn.o_proj.bias`, shape: [s.hidden] };
  }
  if (s.mlpBias) {
    w.gateBias = { name: `${p}.mlp.gate_proj.bias`, shape: [s.intermediate] };
    w.upBias = { name: `${p}.mlp.up_proj.bias`, shape: [s.intermediate] };
    w.downBias = { name: `${p}.mlp.down_proj.bias`, shape: [s.hidden] };
  }
  return w;
}

/** Weights outside the layers. */
export function globalWeights(s: DecoderSpec): Record<"embed" | "norm" | "score", WeightName> {
  return {
    embed: { name: "model.embed_tokens.weight", shape: [s.vocab, s.hidden] },
    norm: { name: "model.norm.weight", shape: [s.hidden] },
    score: { name: "score.weight", shape: [1, s.hidden] },
  };
}

/** Parameters of the network (the embedding table included). */
export function parameterCount(s: DecoderSpec): number {
  let n = 0;
  for (const w of Object.values(globalWeights(s))) n += w.shape.reduce((a, b) => a * b, 1);
  for (const w of Object.values(layerWeights(s, 0))) n += w.shape.reduce((a, b) => a * b, 1) * s.layers;
  return n;
}
