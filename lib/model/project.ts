/**
 * The H-dimensional work of MRM, on tfjs: projecting embedding rows through the
 * first layer, and the first layer's gradient from per-row coefficients. Both are
 * single matMuls with the layouts the wasm kernel is fastest on ([n,H]x[H,h1],
 * [h1,n]x[n,H]).
 */
import * as tf from "@tensorflow/tfjs-core";
import { INPUT_SCALE, type Layer } from "./params.ts";

/** [out, in] row-major -> [in, out] row-major, scaled. */
export function transposeScaled(l: Layer, scale: number): Float32Array {
  const t = new Float32Array(l.in * l.out);
  for (let o = 0; o < l.out; o++) {
    const row = o * l.in;
    for (let i = 0; i < l.in; i++) t[i * l.out + o] = l.weight[row + i] * scale;
  }
  return t;
}

/** Rows uploaded once and used for the forward projection and the backward gradient. */
export class RowBlock {
  #x: tf.Tensor2D;
  /** @param rows n x H values (read during construction only on copying backends) */
  constructor(rows: Float32Array, readonly n: number, readonly dim: number) {
    this.#x = tf.tensor2d(rows, [n, dim]);
  }

  /** 0.01 * X W^T for the first layer: n x out. */
  async project(w1t: tf.Tensor2D): Promise<Float32Array> {
    const y = tf.matMul(this.#x, w1t);
    const out = await y.data() as Float32Array;
    y.dispose();
    return out;
  }

  /** coef^T X: coef is out x n (row-major), result out x H. */
  async weightGrad(coef: Float32Array, out: number): Promise<Float32Array> {
    const c = tf.tensor2d(coef, [out, this.n]);
    const g = tf.matMul(c, this.#x);
    const res = await g.data() as Float32Array;
    c.dispose();
    g.dispose();
    return res;
  }

  /** Frees the uploaded rows. */
  dispose(): void {
    this.#x.dispose();
  }
}

/** Uploads the first layer as [H, out], pre-scaled by the input scale 0.01. */
export function firstLayerTensor(l: Layer): tf.Tensor2D {
  return tf.tensor2d(transposeScaled(l, INPUT_SCALE), [l.in, l.out]);
}

/**
 * Projects every row of an embedding matrix (N x H) through the first layer
 * (times 0.01), in chunks so that only one chunk is ever copied to the backend.
 */
export async function projectAll(
  embeddings: Float32Array,
  dim: number,
  layer: Layer,
  { chunkRows = 2048 }: { chunkRows?: number } = {},
): Promise<Float32Array> {
  const n = embeddings.length / dim;
  const out = new Float32Array(n * layer.out);
  const w = firstLayerTensor(layer);
  try {
    for (let r = 0; r < n; r += chunkRows) {
      const m = Math.min(chunkRows, n - r);
      const block = new RowBlock(embeddings.subarray(r * dim, (r + m) * dim), m, dim);
      try {
        out.set(await block.project(w), r * layer.out);
      } finally {
        block.dispose();
      }
    }
  } finally {
    w.dispose();
  }
  return out;
}
