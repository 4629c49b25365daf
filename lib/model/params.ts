/** MRM parameters (docs/method.md §1) as plain typed arrays, named as the PyTorch state_dict. */
import { FormatError } from "../errors.ts";
import { PyRandom } from "../data/rng.ts";
import type { TensorToWrite } from "../store/safetensors.ts";

/** One bias-free (or biased) linear layer, weight row-major [out, in]. */
export interface Layer {
  /** output width */
  out: number;
  /** input width */
  in: number;
  /** weights, row-major [out, in] */
  weight: Float32Array;
  /** biases [out], when the model uses them */
  bias?: Float32Array;
}

/**
 * The model: base functions `layers` and the K user logits `sharedWeight`. An `mrm-p`
 * model (docs/method.md §8) also has `priorLogPrecision`: there `sharedWeight` is the
 * prior mean w0 of a user's signed weights and exp(priorLogPrecision) the prior's
 * per-base precisions.
 */
export interface MrmParams {
  /** embedding width H */
  dim: number;
  /** the base reward functions: a bias-free MLP whose K outputs are the bases */
  layers: Layer[];
  /** the K user logits (MRM) or the prior mean w0 of a user's weights (mrm-p) */
  sharedWeight: Float32Array;
  /** mrm-p only: log precision of the prior on a user's weights (K values) */
  priorLogPrecision?: Float32Array;
}

/** True for an `mrm-p` model (signed weights, MAP adaptation), false for the release MRM. */
export function isPersonal(p: MrmParams): p is MrmParams & { priorLogPrecision: Float32Array } {
  return p.priorLogPrecision !== undefined;
}

/** The input scale applied before the first layer (fixed in the release). */
export const INPUT_SCALE = 0.01;

/** Number of base reward functions K (the last layer's width). */
export function numBases(p: MrmParams): number {
  return p.layers[p.layers.length - 1].out;
}

/**
 * A fresh model initialized like PyTorch: layers kaiming-uniform (bound
 * 1/sqrt(in)), biases the same bound, `shared_weight ~ N(0, 1)`.
 */
export function initParams(
  dim: number,
  { hiddenSizes = [2], useBias = false, seed = 42 }: { hiddenSizes?: number[]; useBias?: boolean; seed?: number } = {},
): MrmParams {
  const rng = new PyRandom(seed * 7919 + 17);
  const layers: Layer[] = [];
  let inDim = dim;
  for (const out of hiddenSizes) {
    const bound = 1 / Math.sqrt(inDim);
    const weight = new Float32Array(out * inDim);
    for (let i = 0; i < weight.length; i++) weight[i] = (2 * rng.random() - 1) * bound;
    const layer: Layer = { out, in: inDim, weight };
    if (useBias) {
      layer.bias = new Float32Array(out);
      for (let i = 0; i < out; i++) layer.bias[i] = (2 * rng.random() - 1) * bound;
    }
    layers.push(layer);
    inDim = out;
  }
  const sharedWeight = new Float32Array(inDim);
  for (let i = 0; i < inDim; i++) sharedWeight[i] = rng.normal();
  return { dim, layers, sharedWeight };
}

/** A deep copy. */
export function cloneParams(p: MrmParams): MrmParams {
  return {
    dim: p.dim,
    layers: p.layers.map((l) => ({ ...l, weight: l.weight.slice(), bias: l.bias?.slice() })),
    sharedWeight: p.sharedWeight.slice(),
    ...(p.priorLogPrecision ? { priorLogPrecision: p.priorLogPrecision.slice() } : {}),
  };
}

/** Every trainable array in a fixed order (shared_weight first), with its state_dict name. */
export function namedArrays(p: MrmParams): [string, Float32Array][] {
  const out: [string, Float32Array][] = [["shared_weight", p.sharedWeight]];
  if (p.priorLogPrecision) out.push(["prior_log_precision", p.priorLogPrecision]);
  p.layers.forEach((l, i) => {
    out.push([`layers.${i}.weight`, l.weight]);
    if (l.bias) out.push([`layers.${i}.bias`, l.bias]);
  });
  return out;
}

/** Arrays shaped like a model's parameters (a gradient, for one): one per trainable array. */
export interface ParamArrays {
  /** per layer: weight [out*in] and, when the model has biases, bias [out] */
  layers: { weight: Float64Array; bias?: Float64Array }[];
  /** for `sharedWeight` */
  sharedWeight: Float64Array;
  /** for `priorLogPrecision` (mrm-p) */
  priorLogPrecision?: Float64Array;
}

/** `g`'s arrays in namedArrays() order (the order the optimizer state uses). */
export function orderedArrays(p: MrmParams, g: ParamArrays): Float64Array[] {
  const out = [g.sharedWeight];
  if (p.priorLogPrecision) out.push(g.priorLogPrecision ?? new Float64Array(p.priorLogPrecision.length));
  p.layers.forEach((l, i) => {
    out.push(g.layers[i].weight);
    if (l.bias) out.push(g.layers[i].bias ?? new Float64Array(l.bias.length));
  });
  return out;
}

/** The state_dict as tensors for a safetensors checkpoint. */
export function paramsToTensors(p: MrmParams): Record<string, TensorToWrite> {
  const t: Record<string, TensorToWrite> = {};
  p.layers.forEach((l, i) => {
    t[`layers.${i}.weight`] = { data: l.weight, shape: [l.out, l.in] };
    if (l.bias) t[`layers.${i}.bias`] = { data: l.bias, shape: [l.out] };
  });
  t.shared_weight = { data: p.sharedWeight, shape: [p.sharedWeight.length] };
  if (p.priorLogPrecision) t.prior_log_precision = { data: p.priorLogPrecision, shape: [p.priorLogPrecision.length] };
  return t;
}

/** Rebuilds parameters from checkpoint tensors, checking names and shapes. */
export function paramsFromTensors(
  file: string,
  tensors: Record<string, { data: Float32Array; shape: number[] }>,
): MrmParams {
  const sw = tensors.shared_weight;
  if (!sw) throw new FormatError(file, "checkpoint has no 'shared_weight' tensor");
  const layers: Layer[] = [];
  for (let i = 0; tensors[`layers.${i}.weight`]; i++) {
    const w = tensors[`layers.${i}.weight`];
    if (w.shape.length !== 2) {
      throw new FormatError(file, `'layers.${i}.weight' must be 2-D [out, in], got ${JSON.stringify(w.shape)}`);
    }
    const [out, inDim] = w.shape;
    if (i > 0 && inDim !== layers[i - 1].out) {
      throw new FormatError(
        file,
        `'layers.${i}.weight' takes ${inDim} inputs but layer ${i - 1} gives ${layers[i - 1].out}`,
      );
    }
    const layer: Layer = { out, in: inDim, weight: w.data };
    const b = tensors[`layers.${i}.bias`];
    if (b) {
      if (b.data.length !== out) {
        throw new FormatError(file, `'layers.${i}.bias' has ${b.data.length} values, expected ${out}`);
      }
      layer.bias = b.data;
    }
    layers.push(layer);
  }
  if (layers.length === 0) throw new FormatError(file, "checkpoint has no 'layers.0.weight' tensor");
  const k = layers[layers.length - 1].out;
  if (sw.data.length !== k) {
    throw new FormatError(file, `'shared_weight' has ${sw.data.length} values but the last layer has ${k} outputs`);
  }
  const params: MrmParams = { dim: layers[0].in, layers, sharedWeight: sw.data };
  const plp = tensors.prior_log_precision;
  if (plp) {
    if (plp.data.length !== k) {
      throw new FormatError(
        file,
        `'prior_log_precision' has ${plp.data.length} values but the last layer has ${k} outputs`,
      );
    }
    params.priorLogPrecision = plp.data;
  }
  return params;
}
