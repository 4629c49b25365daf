/**
 * The H-dimensional work of MRM, on tfjs: projecting embedding rows through the
 * first layer, and the first layer's gradient from per-row coefficients. Both are
 * single matMuls with the layouts the wasm kernel is fastest on ([n,H]x[H,h1],
 * [h1,n]x[n,H]).
 */
import * as tf from "@tensorflow/tfjs-core";
import { INPUT_SCALE, type Layer } from "./params.ts";
import { rowCount } from "../util/rows.ts";

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
 * evaluation reads back only its counts. A store larger than the device's storage binding
 * limit is kept as several tensors (chunks of whole rows, each within the limit). A store
 * larger than the GPU's memory, or than the budget set with setResidentBudget, is kept in
 * part: its first `kept` rows (whole chunks); the rest stay on the host and go up with
 * the step or the evaluation group that needs them (spillRows). One store at a time (a new
 * one replaces it).
 */
export interface ResidentStore {
  /** the chunks, [rows, H] each; every chunk but the last holds `rowsPerChunk` rows */
  chunks: tf.Tensor2D[];
  /** rows per chunk */
  rowsPerChunk: number;
  /** columns H */
  dim: number;
  /** rows on the GPU: store rows [0, kept) are in the chunks */
  kept: number;
  /** rows in the store */
  total: number;
  /** settles when the upload is known to have worked; rejects (naming the size) when the GPU refused it */
  ready: Promise<void>;
  /** for a view made by spillRows: the resident store it extends */
  base?: ResidentStore;
}

let resident: { key: Float32Array; store: ResidentStore; buffers: GPUBuffer[] } | undefined;
let chunkBytesOverride: number | undefined;
let budgetBytes: number | undefined;
/** bytes handed to one queue.writeBuffer call (the implementation stages each call in host memory) */
const WRITE_BYTES = 64 * 2 ** 20;

/**
 * Caps the bytes of one resident chunk below the device's binding limit (undefined: the
 * limit itself). For tests, which use it to split a small store into chunks, and for
 * devices whose reported limit is not what they can bind.
 */
export function setResidentChunkBytes(bytes: number | undefined): void {
  chunkBytesOverride = bytes;
  releaseResidentRows();
}

/**
 * Caps the GPU memory the store may take (`--gpu_store_gib`; undefined: no cap, the
 * whole store when the GPU takes it). A store over the cap is kept in part: as many whole
 * chunks as fit, the rest uploaded as steps need them. Returns the previous cap.
 */
export function setResidentBudget(bytes: number | undefined): number | undefined {
  if (bytes !== undefined && !(bytes > 0)) throw new RangeError(`resident budget must be > 0 bytes, got ${bytes}`);
  const was = budgetBytes;
  budgetBytes = bytes;
  releaseResidentRows();
  return was;
}

// deno-lint-ignore no-explicit-any
const gpuDevice = () => (tf.backend() as any).device as GPUDevice;

/** Rows per chunk on this device for width `dim` (0: not even one row fits). */
function chunkRows(device: GPUDevice, dim: number): number {
  const limits = device.limits;
  const limit = Math.min(
    limits?.maxStorageBufferBindingSize ?? 128 * 2 ** 20,
    limits?.maxBufferSize ?? Infinity,
    chunkBytesOverride ?? Infinity,
    budgetBytes ?? Infinity,
  );
  return Math.floor(limit / (dim * 4));
}

/** Writes rows [r, r + m) into a new buffer (queue.writeBuffer in WRITE_BYTES pieces). */
function writeChunk(device: GPUDevice, embeddings: Float32Array, dim: number, r: number, m: number): GPUBuffer {
  const values = m * dim;
  const buffer = device.createBuffer({
    size: values * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  for (let at = 0; at < values; at += WRITE_BYTES / 4) {
    device.queue.writeBuffer(
      buffer,
      at * 4,
      embeddings as Float32Array<ArrayBuffer>,
      r * dim + at,
      Math.min(WRITE_BYTES / 4, values - at),
    );
    // the implementation keeps each write's staging copy until the next submit: flush
    // after every 1 GiB so a large store is not staged whole in host memory
    writtenSinceSubmit += Math.min(WRITE_BYTES, (values - at) * 4);
    if (writtenSinceSubmit >= 2 ** 30) {
      device.queue.submit([]);
      writtenSinceSubmit = 0;
    }
  }
  return buffer;
}
let writtenSinceSubmit = 0;

/** Makes `buffers` (chunks of `rowsPerChunk` rows from row 0) the resident store. */
function keepChunks(
  embeddings: Float32Array,
  dim: number,
  rowsPerChunk: number,
  buffers: GPUBuffer[],
  ready: Promise<void>,
): ResidentStore {
  const total = rowCount(embeddings, dim), kept = Math.min(total, buffers.length * rowsPerChunk);
  const chunks = buffers.map((buffer, c) => {
    const m = Math.min(rowsPerChunk, total - c * rowsPerChunk);
    return tf.keep(tf.tensor({ buffer, zeroCopy: true }, [m, dim], "float32") as tf.Tensor2D);
  });
  resident = { key: embeddings, store: { chunks, rowsPerChunk, dim, kept, total, ready }, buffers };
  return resident.store;
}

/**
 * The store kept on the GPU when the backend is webgpu, else undefined: the whole store,
 * or under a budget (setResidentBudget) as many whole chunks as it allows. The rows go up
 * with queue.writeBuffer into buffers this module owns, which become tensors without a
 * copy: measured on an NVIDIA H200 in Deno, tfjs's own upload path (a buffer mapped at
 * creation, filled through getMappedRange) moved 0.8 GB in 43 s.
 */
export function residentRows(embeddings: Float32Array, dim: number): ResidentStore | undefined {
  if (tf.getBackend() !== "webgpu" || embeddings.length === 0) return undefined;
  if (resident?.key === embeddings && resident.store.dim === dim) return resident.store;
  const device = gpuDevice();
  const rows = rowCount(embeddings, dim), rowsPerChunk = chunkRows(device, dim);
  if (rowsPerChunk < 1) return undefined;
  const count = Math.min(
    Math.ceil(rows / rowsPerChunk),
    budgetBytes === undefined ? Infinity : Math.floor(budgetBytes / (rowsPerChunk * dim * 4)),
  );
  if (!(count >= 1)) {
    throw new Error(
      `residentRows: no chunk to keep (rows ${rows}, rows per chunk ${rowsPerChunk}, budget ${budgetBytes} B, ` +
        `chunk cap ${chunkBytesOverride} B, binding ${device.limits?.maxStorageBufferBindingSize} B, ` +
        `buffer ${device.limits?.maxBufferSize} B)`,
    );
  }
  releaseResidentRows();
  const buffers: GPUBuffer[] = [];
  device.pushErrorScope("out-of-memory");
  device.pushErrorScope("validation");
  for (let c = 0; c < count; c++) {
    const r = c * rowsPerChunk;
    buffers.push(writeChunk(device, embeddings, dim, r, Math.min(rowsPerChunk, rows - r)));
  }
  const size = (n: number) => `${(n * dim * 4 / 2 ** 30).toFixed(2)} GiB`;
  const ready = Promise.all([device.popErrorScope(), device.popErrorScope()]).then(([validation, memory]) => {
    const error = memory ?? validation;
    if (error) {
      throw new Error(
        `the embedding store (${rows} rows x H=${dim}, ${size(rows)}) could not be kept on the GPU: ${error.message}`,
      );
    }
  });
  // a rejection is reported where ready is awaited; this keeps it from counting as unhandled first
  ready.catch(() => {});
  return keepChunks(embeddings, dim, rowsPerChunk, buffers, ready);
}

/**
 * After the GPU refused the whole store: uploads its chunks one at a time, each checked
 * before the next, until one is refused; keeps those before it but the last (left free
 * for the run's own buffers). Undefined when fewer than two went up.
 */
async function residentPrefix(embeddings: Float32Array, dim: number): Promise<ResidentStore | undefined> {
  const device = gpuDevice(), rows = rowCount(embeddings, dim), rowsPerChunk = chunkRows(device, dim);
  const buffers: GPUBuffer[] = [];
  for (let r = 0; r < rows; r += rowsPerChunk) {
    device.pushErrorScope("out-of-memory");
    device.pushErrorScope("validation");
    const buffer = writeChunk(device, embeddings, dim, r, Math.min(rowsPerChunk, rows - r));
    const [validation, memory] = await Promise.all([device.popErrorScope(), device.popErrorScope()]);
    if (validation || memory) {
      buffer.destroy();
      buffers.pop()?.destroy();
      break;
    }
    buffers.push(buffer);
  }
  if (buffers.length === 0) return undefined;
  return keepChunks(embeddings, dim, rowsPerChunk, buffers, Promise.resolve());
}

/**
 * A view of `store` that also holds the store rows `rows` it does not keep: those are
 * uploaded (one buffer, copied into tfjs tensors of at most `rowsPerChunk` rows, which
 * follow the resident chunks). `at(row)` is where a store row sits in the view. The view
 * owns the uploaded tensors: dispose() frees them once the work that reads them is queued.
 * Where the store is whole, the view is the store itself and at() the identity.
 */
export function spillRows(
  store: ResidentStore,
  embeddings: Float32Array,
  rows: Iterable<number>,
): { view: ResidentStore; at: (row: number) => number; dispose: () => void } {
  if (store.kept === store.total) return { view: store, at: (r) => r, dispose: () => {} };
  const H = store.dim, spill = new Map<number, number>();
  for (const r of rows) if (r >= store.kept && !spill.has(r)) spill.set(r, store.kept + spill.size);
  const at = (r: number) => r < store.kept ? r : spill.get(r)!;
  if (spill.size === 0) return { view: store, at, dispose: () => {} };
  const values = new Float32Array(spill.size * H);
  let j = 0;
  for (const r of spill.keys()) values.set(embeddings.subarray(r * H, (r + 1) * H), H * j++);
  const all = uploadFloat32(values, [spill.size, H]);
  const extra: tf.Tensor2D[] = [];
  if (spill.size <= store.rowsPerChunk) extra.push(all);
  else {
    for (let r = 0; r < spill.size; r += store.rowsPerChunk) {
      extra.push(tf.slice(all, [r, 0], [Math.min(store.rowsPerChunk, spill.size - r), H]));
    }
    all.dispose();
  }
  const view: ResidentStore = {
    ...store,
    chunks: [...store.chunks, ...extra],
    kept: store.kept + spill.size,
    total: store.kept + spill.size,
    base: store,
  };
  return { view, at, dispose: () => extra.forEach((t) => t.dispose()) };
}

/**
 * How int32 data for the kernels (a step's or an epoch's rows and ranges, an evaluation's
 * pairs) go up on webgpu: "tfjs" (tfjs's own path, a buffer mapped at creation and filled
 * through getMappedRange), "write" (queue.writeBuffer into a new buffer, copied into a
 * tfjs tensor on the GPU), or "auto": tfjs's path below WRITE_FROM values, writeBuffer
 * from there. Measured on an H200 (bench/gpu_check.ts): a PRISM-size epoch's 250 small
 * per-step uploads took 0.03 s longer through writeBuffer, and an evaluation's one upload
 * of 60,000 values 9 ms less.
 */
export type UploadMode = "tfjs" | "write" | "auto";
let uploadMode: UploadMode = "auto";
const WRITE_FROM = 16384;

/** Sets how uploadInt32 sends values (see UploadMode); returns the previous mode. */
export function setUploadMode(mode: UploadMode): UploadMode {
  const was = uploadMode;
  uploadMode = mode;
  return was;
}

/** An int32 tensor of `values`, sent to the GPU as the upload mode says (webgpu only). */
export function uploadInt32(values: Int32Array): tf.Tensor1D {
  const write = uploadMode === "write" || (uploadMode === "auto" && values.length >= WRITE_FROM);
  if (!write || tf.getBackend() !== "webgpu") return tf.tensor1d(values, "int32");
  return writeTensor(values, [values.length], "int32") as tf.Tensor1D;
}

/** A float32 tensor of `values` in `shape`, sent as uploadInt32 sends int32 values. */
export function uploadFloat32(values: Float32Array, shape: [number, number]): tf.Tensor2D {
  const write = uploadMode === "write" || (uploadMode === "auto" && values.length >= WRITE_FROM);
  if (!write || tf.getBackend() !== "webgpu") return tf.tensor2d(values, shape);
  return writeTensor(values, shape, "float32") as tf.Tensor2D;
}

/** queue.writeBuffer into a new buffer, which tfjs copies into a tensor of its own. */
function writeTensor(values: Int32Array | Float32Array, shape: number[], dtype: "int32" | "float32"): tf.Tensor {
  const device = gpuDevice();
  const buffer = device.createBuffer({
    size: Math.max(4, values.byteLength),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(buffer, 0, values as Int32Array<ArrayBuffer>);
  // tfjs copies it into a buffer of its own and submits the copy; this one can go then
  const t = tf.tensor({ buffer }, shape, dtype);
  buffer.destroy();
  return t;
}

const refused = new WeakSet<Float32Array>();
const toldPartial = new WeakSet<Float32Array>();

/**
 * The store kept on the GPU once its upload is known to have worked (residentRows, then
 * its `ready`), or undefined: not webgpu, or the GPU refused even two chunks of it.
 * Where the GPU refuses the whole store (out of memory), the chunks go up one at a time
 * and as many are kept as it takes, less one left free (residentPrefix); the rows it
 * does not keep go up with each step or evaluation group that needs them (spillRows).
 * Said once on stderr, as is a store kept in part under a budget. Where not even that
 * works, the store is not tried again and the callers' non-resident paths upload each
 * step's rows as the step runs: much slower.
 */
export async function residentStore(embeddings: Float32Array, dim: number): Promise<ResidentStore | undefined> {
  if (refused.has(embeddings)) return undefined;
  let store = residentRows(embeddings, dim);
  if (!store) return undefined;
  try {
    await store.ready;
  } catch (e) {
    releaseResidentRows();
    store = await residentPrefix(embeddings, dim);
    if (!store) {
      refused.add(embeddings);
      console.error(
        `webgpu: ${
          (e as Error).message
        }; each step uploads its rows instead (much slower; --backend wasm may be faster)`,
      );
      return undefined;
    }
    console.error(`webgpu: ${(e as Error).message}`);
  }
  if (store.kept < store.total && !toldPartial.has(embeddings)) {
    toldPartial.add(embeddings);
    const size = (bytes: number) =>
      bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
    console.error(
      `webgpu: ${size(store.kept * dim * 4)} of the store's ${size(store.total * dim * 4)} (${store.kept} of ` +
        `${store.total} rows) kept on the GPU${
          budgetBytes === undefined ? "" : ` (--gpu_store_gib ${+(budgetBytes / 2 ** 30).toPrecision(3)})`
        }; the other rows go up with each step that needs them`,
    );
  }
  return store;
}

/** The GPU buffers behind a resident store's chunks (undefined for a view, or a store no longer resident). */
export function residentBuffers(store: ResidentStore): GPUBuffer[] | undefined {
  return resident?.store === store ? resident.buffers : undefined;
}

/** Frees the GPU copy of the store (runs call it when they end). */
export function releaseResidentRows(): void {
  resident?.store.chunks.forEach((c) => c.dispose());
  resident?.buffers.forEach((b) => b.destroy());
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
  const n = rowCount(embeddings, dim);
  const out = new Float32Array(n * layer.out);
  const w = firstLayerTensor(layer);
  const store = await residentStore(embeddings, dim);
  try {
    if (store) {
      // the rows on the GPU: one product per chunk, joined there, one readback
      const y = tf.tidy(() => tf.concat2d(store.chunks.map((c) => tf.matMul(c, w)), 0));
      out.set(await y.data() as Float32Array);
      y.dispose();
    }
    for (let r = store?.kept ?? 0; r < n; r += chunkRows) {
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
