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

/**
 * coef^T X on the CPU: out (k x H) = coef (k x n) * X (n x H), four rows at a time
 * so each pass over the output reads four input rows.
 */
export function rowCombination(
  x: Float32Array | Float64Array,
  coef: Float32Array | Float64Array,
  n: number,
  dim: number,
  k: number,
): Float64Array {
  const out = new Float64Array(k * dim);
  let r = 0;
  for (; r + 4 <= n; r += 4) {
    const o0 = r * dim, o1 = o0 + dim, o2 = o1 + dim, o3 = o2 + dim;
    for (let j = 0; j < k; j++) {
      const c = j * n + r, a0 = coef[c], a1 = coef[c + 1], a2 = coef[c + 2], a3 = coef[c + 3];
      if (a0 === 0 && a1 === 0 && a2 === 0 && a3 === 0) continue;
      const base = j * dim;
      for (let h = 0; h < dim; h++) out[base + h] += a0 * x[o0 + h] + a1 * x[o1 + h] + a2 * x[o2 + h] + a3 * x[o3 + h];
    }
  }
  for (; r < n; r++) {
    const o = r * dim;
    for (let j = 0; j < k; j++) {
      const a = coef[j * n + r];
      if (a === 0) continue;
      const base = j * dim;
      for (let h = 0; h < dim; h++) out[base + h] += a * x[o + h];
    }
  }
  return out;
}

/**
 * The store's rows kept on the GPU (webgpu backend only), uploaded once and reused by
 * every step and evaluation of a run: steps then send row indices instead of rows, and an
 * evaluation projects the whole store with one readback. A store larger than the
 * device's storage binding limit is kept as several tensors (chunks of whole rows, each
 * within the limit). One store at a time (a new one replaces it).
 */
export interface ResidentStore {
  /** the chunks, [rows, H] each; every chunk but the last holds `rowsPerChunk` rows */
  chunks: tf.Tensor2D[];
  /** rows per chunk */
  rowsPerChunk: number;
  /** columns H */
  dim: number;
}

let resident: { key: Float32Array; store: ResidentStore } | undefined;
let chunkBytesOverride: number | undefined;

/**
 * Caps the bytes of one resident chunk below the device's binding limit (undefined: the
 * limit itself). For tests, which use it to split a small store into chunks, and for
 * devices whose reported limit is not what they can bind.
 */
export function setResidentChunkBytes(bytes: number | undefined): void {
  chunkBytesOverride = bytes;
  releaseResidentRows();
}

/** The store kept on the GPU when the backend is webgpu, else undefined. */
export function residentRows(embeddings: Float32Array, dim: number): ResidentStore | undefined {
  if (tf.getBackend() !== "webgpu" || embeddings.length === 0) return undefined;
  if (resident?.key === embeddings && resident.store.dim === dim) return resident.store;
  // deno-lint-ignore no-explicit-any
  const limits = (tf.backend() as any).device?.limits;
  const limit = Math.min(
    limits?.maxStorageBufferBindingSize ?? 128 * 2 ** 20,
    limits?.maxBufferSize ?? Infinity,
    chunkBytesOverride ?? Infinity,
  );
  const rows = embeddings.length / dim, rowsPerChunk = Math.floor(limit / (dim * 4));
  if (rowsPerChunk < 1) return undefined;
  releaseResidentRows();
  const chunks: tf.Tensor2D[] = [];
  for (let r = 0; r < rows; r += rowsPerChunk) {
    const m = Math.min(rowsPerChunk, rows - r);
    chunks.push(tf.keep(tf.tensor2d(embeddings.subarray(r * dim, (r + m) * dim), [m, dim])));
  }
  resident = { key: embeddings, store: { chunks, rowsPerChunk, dim } };
  return resident.store;
}

/** Frees the GPU copy of the store (runs call it when they end). */
export function releaseResidentRows(): void {
  resident?.store.chunks.forEach((c) => c.dispose());
  resident = undefined;
}

/** The store's rows at `indices`, in that order, gathered on the GPU from the chunks. */
export function gatherResident(store: ResidentStore, indices: Int32Array): tf.Tensor2D {
  return tf.tidy(() => {
    if (store.chunks.length === 1) return tf.gather(store.chunks[0], tf.tensor1d(indices, "int32")) as tf.Tensor2D;
    // per chunk, its rows in order of appearance; then one gather puts them back in order
    const parts: tf.Tensor2D[] = [], order = new Int32Array(indices.length);
    let at = 0;
    store.chunks.forEach((chunk, c) => {
      const local: number[] = [];
      indices.forEach((row, i) => {
        if (Math.floor(row / store.rowsPerChunk) !== c) return;
        order[i] = at + local.length;
        local.push(row - c * store.rowsPerChunk);
      });
      if (local.length === 0) return;
      parts.push(tf.gather(chunk, tf.tensor1d(local, "int32")) as tf.Tensor2D);
      at += local.length;
    });
    const joined = parts.length === 1 ? parts[0] : tf.concat2d(parts, 0);
    return tf.gather(joined, tf.tensor1d(order, "int32")) as tf.Tensor2D;
  });
}

/** Rows uploaded once and used for the forward projection and the backward gradient. */
export class RowBlock {
  #x: tf.Tensor2D;
  #rows: Float32Array;
  /**
   * @param rows n x H values; must stay unchanged until dispose()
   * @param gather where the store is on the GPU: the same rows taken from it by index (`indices`), not uploaded
   */
  constructor(
    rows: Float32Array,
    readonly n: number,
    readonly dim: number,
    gather?: { store: ResidentStore; indices: Int32Array },
  ) {
    this.#rows = rows;
    this.#x = gather ? gatherResident(gather.store, gather.indices) : tf.tensor2d(rows, [n, dim]);
  }

  /** 0.01 * X W^T for the first layer: n x out. */
  async project(w1t: tf.Tensor2D): Promise<Float32Array> {
    const y = tf.matMul(this.#x, w1t);
    const out = await y.data() as Float32Array;
    y.dispose();
    return out;
  }

  /**
   * coef X: coef is out x n (row-major), result out x H. On GPU backends a tfjs
   * matMul; on CPU backends a JS kernel, because the wasm matMul repacks its
   * right operand (this block, new every step) on each call: 2.0 ms vs 0.17 ms
   * for 50 x 4096 rows.
   */
  async weightGrad(coef: Float32Array, out: number): Promise<Float64Array> {
    if (tf.getBackend() !== "webgpu") return rowCombination(this.#rows, coef, this.n, this.dim, out);
    const c = tf.tensor2d(coef, [out, this.n]);
    const g = tf.matMul(c, this.#x);
    const res = await g.data() as Float32Array;
    c.dispose();
    g.dispose();
    return Float64Array.from(res);
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
  { chunkRows = 512 }: { chunkRows?: number } = {},
): Promise<Float32Array> {
  const n = embeddings.length / dim;
  const out = new Float32Array(n * layer.out);
  const w = firstLayerTensor(layer);
  const store = residentRows(embeddings, dim);
  if (store) {
    // the store is on the GPU: one product per chunk, joined there, one readback
    try {
      const y = tf.tidy(() => tf.concat2d(store.chunks.map((c) => tf.matMul(c, w)), 0));
      out.set(await y.data() as Float32Array);
      y.dispose();
      return out;
    } finally {
      w.dispose();
    }
  }
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
