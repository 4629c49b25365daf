/**
 * Pair features and the first layer's gradient straight from the store kept on the GPU
 * (webgpu backend), as two WGSL kernels run through tfjs-backend-webgpu's custom-program
 * route. They replace a gather, two slices, a subtraction, two products and two scalings
 * per step (tfjs ops), each of which costs host time in Deno whatever its size.
 *
 * - projectPairsGpu: yd[p] = 0.01 W1 (x[chosen p] - x[rejected p]), one workgroup per pair;
 * - firstLayerGradGpu: the flat gradient of the parameters when the model is one layer:
 *   dL/dW1[j, h] = 0.01 sum_p dz[p, j] (x[chosen p, h] - x[rejected p, h]), and the
 *   K-space gradients of the small arrays copied into their places.
 *
 * Rows are store rows; the kernels read them from up to PAIRS_GPU_LIMITS.chunks resident
 * chunks. Indices and numbers come in one int32 tensor ("packed") per step, so that a
 * step uploads once.
 */
import * as tf from "@tensorflow/tfjs-core";
import { INPUT_SCALE } from "./params.ts";
import type { ResidentStore } from "./project.ts";

/** The widest first layer the kernels take (their per-thread sums are unrolled registers). */
export const PAIRS_GPU_MAX_WIDTH = 16;

/**
 * Whether the kernels take this store and first-layer width: every chunk is bound at
 * once, next to at most four other buffers, within the device's storage buffers per
 * shader stage (lib/backend.ts asks for the adapter's number).
 */
export function pairsGpuFits(store: ResidentStore, width: number): boolean {
  return withinLimits(store, width) && verified.get(store.base ?? store) !== false;
}

function withinLimits(store: ResidentStore, width: number): boolean {
  // deno-lint-ignore no-explicit-any
  const buffers = (tf.backend() as any).device?.limits?.maxStorageBuffersPerShaderStage ?? 8;
  return store.chunks.length + 4 <= buffers && width <= PAIRS_GPU_MAX_WIDTH;
}

const verified = new WeakMap<ResidentStore, boolean>();

/**
 * Checks, once per resident store, that projectPairsGpu reads every chunk of it as tfjs's
 * own gather and product do (pairs that span all chunks, one readback); where it does
 * not, pairsGpuFits says no from then on and the callers take their general paths. The
 * kernels are checked on small inputs at start (kspaceGpuReady); this covers what only a
 * real store has: its number of chunks and their sizes. Returns why it failed, or
 * undefined.
 */
export async function verifyPairsGpu(store: ResidentStore): Promise<string | undefined> {
  // a view made by spillRows has its store's verdict
  if (store.base) return verifyPairsGpu(store.base);
  if (verified.has(store) || !withinLimits(store, 1)) return undefined;
  const C = store.chunks.length, rpc = store.rowsPerChunk, H = store.dim;
  const lastRows = store.chunks[C - 1].shape[0];
  // each chunk's first and last row against the next chunk's (or the first chunk's)
  const rows: number[] = [];
  for (let c = 0; c < C; c++) {
    const next = (c + 1) % C;
    rows.push(c * rpc, next * rpc + (next === C - 1 ? lastRows - 1 : rpc - 1));
    rows.push(c * rpc + (c === C - 1 ? lastRows - 1 : rpc - 1), next * rpc);
  }
  const P = rows.length / 2;
  const chosen = rows.filter((_, i) => i % 2 === 0), rejected = rows.filter((_, i) => i % 2 === 1);
  // deno-lint-ignore no-explicit-any
  const device = (tf.backend() as any).device as GPUDevice;
  device.pushErrorScope("validation");
  const both = tf.tidy(() => {
    const w = tf.tensor1d(Float32Array.from({ length: H }, (_, h) => 1 + (h % 7)));
    const packed = tf.tensor1d(Int32Array.from([...chosen, ...rejected]), "int32");
    const ours = projectPairsGpu(store, packed, 0, P, w, 0, 1);
    const gather = (r: number[]) => {
      const parts = r.map((row) => {
        const c = Math.floor(row / rpc);
        return tf.slice(store.chunks[c], [row - c * rpc, 0], [1, H]);
      });
      return tf.concat(parts, 0);
    };
    const theirs = tf.mul(tf.matMul(tf.sub(gather(chosen), gather(rejected)), tf.reshape(w, [H, 1])), INPUT_SCALE);
    return tf.concat([tf.reshape(ours, [-1]), tf.reshape(theirs, [-1])]);
  });
  const values = await both.data();
  both.dispose();
  const error = await device.popErrorScope();
  let why: string | undefined;
  if (error) why = error.message;
  else {
    for (let p = 0; p < P; p++) {
      const a = values[p], b = values[P + p];
      if (!(Math.abs(a - b) <= 1e-4 * Math.max(1, Math.abs(b)))) {
        why = `pair ${p} (rows ${chosen[p]}, ${rejected[p]}): ${a} against ${b}`;
        break;
      }
    }
  }
  verified.set(store, why === undefined);
  return why && `the store's ${C} chunks: ${why}`;
}

/** WGSL that reads element h of store row `row` (u32) from the chunk holding it. */
function rowReader(chunks: number): string {
  const cases = Array.from({ length: chunks }, (_, c) => `    case ${c}u: { return X${c}[at]; }`).join("\n");
  return `
fn xAt(row: u32, h: u32) -> f32 {
  let c = row / u32(uniforms.rowsPerChunk);
  let at = (row - c * u32(uniforms.rowsPerChunk)) * u32(uniforms.dim) + h;
  switch c {
${cases}
    default: { return 0.0; }
  }
}
`;
}

const chunkNames = (chunks: number) => Array.from({ length: chunks }, (_, c) => `X${c}`);

/**
 * The pair-feature kernel's WGSL without tfjs's preamble, for callers that bind it
 * themselves (lib/train/epoch_gpu.ts): bindings X0..X{chunks-1}, `Packed`, `Params`,
 * `result`; one workgroup of 64 threads per pair (workgroupId.y * numWorkgroups.x +
 * workgroupId.x); the uniforms of ProjectPairsProgram.
 */
export function projectPairsWgsl(chunks: number, width: number): string {
  return new ProjectPairsProgram(chunks, width, 1).getUserCode();
}

/**
 * The first layer's flat gradient (firstLayerGradGpu's kernel, 64 threads a workgroup, one
 * thread per parameter at `index`) as WGSL without tfjs's preamble: bindings X0.., `Packed`,
 * `Dz`, `result`; the uniforms of FirstLayerGradProgram.
 */
export function firstLayerGradWgsl(chunks: number): string {
  return new FirstLayerGradProgram(chunks, 1, false).getUserCode();
}

/** yd for each pair: one workgroup of 64 threads per pair, each summing a 64th of H, then a tree. */
class ProjectPairsProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [0] };
  dispatch: [number, number, number];
  variableNames: string[];
  uniforms = "rowsPerChunk : i32, dim : i32, pairs : i32, rowsAt : i32, w1At : i32, scale : f32,";
  workgroupSize: [number, number, number] = [64, 1, 1];
  size = false;
  constructor(readonly chunks: number, readonly width: number, pairs: number) {
    this.outputShape = [pairs, width];
    this.shaderKey = `mrmProjectPairs_${chunks}_${width}`;
    this.variableNames = [...chunkNames(chunks), "Packed", "Params"];
    this.dispatch = [Math.min(pairs, 65535), Math.ceil(pairs / 65535), 1];
  }
  getUserCode(): string {
    const w = this.width, j = [...Array(w).keys()];
    return `
var<workgroup> red: array<f32, ${64 * w}>;
${rowReader(this.chunks)}
fn main(index: i32) {
  // a workgroup past the last pair (the dispatch's rounding) computes the last pair again
  // and writes nothing: an early return before the barriers below would break WGSL's
  // uniformity rule (p comes from a private copy of workgroup_id)
  let p = i32(workgroupId.y * numWorkgroups.x + workgroupId.x);
  let q = min(p, uniforms.pairs - 1);
  let t = i32(localId.x);
  let c = u32(Packed[uniforms.rowsAt + q]);
  let r = u32(Packed[uniforms.rowsAt + uniforms.pairs + q]);
  let H = uniforms.dim;
${j.map((k) => `  var a${k} = 0.0;`).join("\n")}
  for (var h = t; h < H; h += 64) {
    let d = xAt(c, u32(h)) - xAt(r, u32(h));
${j.map((k) => `    a${k} += d * Params[uniforms.w1At + ${k} * H + h];`).join("\n")}
  }
${j.map((k) => `  red[${k} * 64 + t] = a${k};`).join("\n")}
  workgroupBarrier();
  for (var s = 32; s > 0; s = s >> 1) {
    if (t < s) {
${j.map((k) => `      red[${k} * 64 + t] += red[${k} * 64 + t + s];`).join("\n")}
    }
    workgroupBarrier();
  }
  if (t < ${w} && p < uniforms.pairs) { result[p * ${w} + t] = uniforms.scale * red[t * 64]; }
}
`;
  }
}

/**
 * yd (pairs x width): 0.01 W1 (x_chosen - x_rejected) for each pair, where the rows are
 * packed[rowsAt + p] (chosen) and packed[rowsAt + pairs + p] (rejected), and W1 (width x
 * H, row-major) starts at params[w1At].
 */
export function projectPairsGpu(
  store: ResidentStore,
  packed: tf.Tensor,
  rowsAt: number,
  pairs: number,
  params: tf.Tensor,
  w1At: number,
  width: number,
): tf.Tensor2D {
  if (!withinLimits(store, width)) {
    throw new RangeError(`projectPairsGpu: ${store.chunks.length} chunks, width ${width}`);
  }
  const program = new ProjectPairsProgram(store.chunks.length, width, pairs);
  // deno-lint-ignore no-explicit-any
  const backend = tf.backend() as any;
  const info = backend.runWebGPUProgram(program, [...store.chunks, packed, params], "float32", [
    { type: "int32", data: [store.rowsPerChunk] },
    { type: "int32", data: [store.dim] },
    { type: "int32", data: [pairs] },
    { type: "int32", data: [rowsAt] },
    { type: "int32", data: [w1At] },
    { type: "float32", data: [INPUT_SCALE] },
  ]);
  return tf.engine().makeTensorFromTensorInfo(info) as tf.Tensor2D;
}

/**
 * WGSL for a kernel of one workgroup of 256 threads that defines `fn grad(i: i32) -> f32`
 * (parameter i's gradient) and binds PMV ([parameters, m, v], 3n) and Packed (the step's
 * numbers as float32 bits at uniforms.numAt): the gradient's sum of squares, the
 * global-norm clip, and Adam (clipAdamGpu's arithmetic) into result (3n). The gradient
 * is parked where the first moment goes; each thread reads back only what it wrote.
 */
export const ONE_GROUP_CLIP_ADAM = `
var<workgroup> ss: array<f32, 256>;
fn num(i: i32) -> f32 { return bitcast<f32>(Packed[uniforms.numAt + i]); }

fn main(index: i32) {
  let t = i32(localId.x);
  let n = uniforms.n;
  var s = 0.0;
  for (var i = t; i < n; i += 256) {
    let g = grad(i);
    result[n + i] = g;
    s += g * g;
  }
  ss[t] = s;
  workgroupBarrier();
  for (var w = 128; w > 0; w = w >> 1) {
    if (t < w) { ss[t] += ss[t + w]; }
    workgroupBarrier();
  }
  let scale = min(num(8), num(2) / (sqrt(ss[0]) + num(9)));
  for (var i = t; i < n; i += 256) {
    let g = result[n + i] * scale;
    let m = PMV[n + i] * num(3) + g * num(4);
    let v = PMV[2 * n + i] * num(5) + g * g * num(6);
    result[i] = PMV[i] - (m * num(0)) / (sqrt(v) * num(1) + num(7));
    result[n + i] = m;
    result[2 * n + i] = v;
  }
}
`;

/**
 * The flat gradient of a one-layer model: one thread per parameter over as many
 * workgroups as it takes, or (withAdam) one workgroup that also clips and applies Adam.
 */
class FirstLayerGradProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [0] };
  dispatch: [number, number, number];
  variableNames: string[];
  uniforms =
    "rowsPerChunk : i32, dim : i32, pairs : i32, rowsAt : i32, small : i32, width : i32, thetaAt : i32, rhoAt : i32, n : i32, numAt : i32, scale : f32,";
  workgroupSize: [number, number, number];
  size = false;
  constructor(readonly chunks: number, n: number, readonly withAdam: boolean) {
    this.outputShape = [withAdam ? 3 * n : n];
    this.shaderKey = `mrmFirstLayerGrad_${chunks}_${withAdam}`;
    this.variableNames = [...chunkNames(chunks), "Packed", "Dz", ...(withAdam ? ["PMV"] : [])];
    this.workgroupSize = [withAdam ? 256 : 64, 1, 1];
    const groups = Math.ceil(n / 64);
    this.dispatch = withAdam ? [1, 1, 1] : [Math.min(groups, 65535), Math.ceil(groups / 65535), 1];
  }
  getUserCode(): string {
    return `
${rowReader(this.chunks)}
// parameter i's gradient: shared_weight's and the prior's from the K-space kernel (after
// dz), 0 for biases; W1's from the pairs' rows and dz
fn grad(i: i32) -> f32 {
  let P = uniforms.pairs;
  let K = uniforms.width;
  if (i < uniforms.small) {
    if (i >= uniforms.thetaAt && i < uniforms.thetaAt + K) { return Dz[P * K + i - uniforms.thetaAt]; }
    if (uniforms.rhoAt >= 0 && i >= uniforms.rhoAt && i < uniforms.rhoAt + K) { return Dz[P * K + K + i - uniforms.rhoAt]; }
    return 0.0;
  }
  let e = i - uniforms.small;
  let j = e / uniforms.dim;
  let h = u32(e - j * uniforms.dim);
  var g = 0.0;
  for (var p = 0; p < P; p++) {
    let d = xAt(u32(Packed[uniforms.rowsAt + p]), h) - xAt(u32(Packed[uniforms.rowsAt + P + p]), h);
    g += Dz[p * K + j] * d;
  }
  return uniforms.scale * g;
}
${
      this.withAdam ? ONE_GROUP_CLIP_ADAM : `
fn main(index: i32) {
  if (index < uniforms.n) { result[index] = grad(index); }
}
`
    }`;
  }
}

/** Where the small arrays' gradients come from and go (see firstLayerGradGpu). */
export interface GradLayout {
  /** values in the small arrays, which come first in the flat gradient */
  small: number;
  /** the first layer's width (K) */
  width: number;
  /** where shared_weight sits among the small arrays */
  thetaAt: number;
  /** where prior_log_precision sits (-1: none) */
  rhoAt: number;
}

function runGrad(
  store: ResidentStore,
  packed: tf.Tensor,
  rowsAt: number,
  pairs: number,
  dz: tf.Tensor,
  o: GradLayout,
  adam?: { pmv: tf.Tensor; numAt: number },
): tf.Tensor1D {
  if (!withinLimits(store, o.width)) throw new RangeError(`first-layer gradient: ${store.chunks.length} chunks`);
  const n = o.small + o.width * store.dim;
  if (adam && adam.pmv.size !== 3 * n) {
    throw new RangeError(`firstLayerGradAdamGpu: ${adam.pmv.size} values for ${n} parameters`);
  }
  // deno-lint-ignore no-explicit-any
  const backend = tf.backend() as any;
  const info = backend.runWebGPUProgram(
    new FirstLayerGradProgram(store.chunks.length, n, adam !== undefined),
    [...store.chunks, packed, dz, ...(adam ? [adam.pmv] : [])],
    "float32",
    [
      { type: "int32", data: [store.rowsPerChunk] },
      { type: "int32", data: [store.dim] },
      { type: "int32", data: [pairs] },
      { type: "int32", data: [rowsAt] },
      { type: "int32", data: [o.small] },
      { type: "int32", data: [o.width] },
      { type: "int32", data: [o.thetaAt] },
      { type: "int32", data: [o.rhoAt] },
      { type: "int32", data: [n] },
      { type: "int32", data: [adam?.numAt ?? 0] },
      { type: "float32", data: [INPUT_SCALE] },
    ],
  );
  return tf.engine().makeTensorFromTensorInfo(info) as tf.Tensor1D;
}

/**
 * The flat gradient of a one-layer model, laid out as [small arrays (`small` values),
 * W1 (width x H)]: `dz` is the K-space kernel's output (dz for each pair, pairs x K,
 * then dTheta and dRho); the rows are as in projectPairsGpu. Every small value other
 * than shared_weight's and prior_log_precision's (biases, which cancel in chosen -
 * rejected) gets 0.
 */
export function firstLayerGradGpu(
  store: ResidentStore,
  packed: tf.Tensor,
  rowsAt: number,
  pairs: number,
  dz: tf.Tensor,
  o: GradLayout,
): tf.Tensor1D {
  return runGrad(store, packed, rowsAt, pairs, dz, o);
}

/**
 * A step's end for a one-layer model in one kernel of one workgroup: the flat gradient
 * (as firstLayerGradGpu), then the global-norm clip and Adam on `pmv` = [parameters,
 * first moments, second moments] (as clipAdamGpu), with the step's numbers as float32
 * bits at `numAt` in `packed`. Returns the new [parameters, moments]. One workgroup walks
 * every parameter once per pair; worth it while that is small next to a dispatch's host
 * cost (the caller decides, see GRAD_ADAM_MAX_WORK).
 */
export function firstLayerGradAdamGpu(
  store: ResidentStore,
  packed: tf.Tensor,
  rowsAt: number,
  pairs: number,
  dz: tf.Tensor,
  pmv: tf.Tensor,
  o: GradLayout & { numAt?: number },
): tf.Tensor1D {
  return runGrad(store, packed, rowsAt, pairs, dz, o, { pmv, numAt: o.numAt ?? 0 });
}

/**
 * The most parameters x pairs for which firstLayerGradAdamGpu's one workgroup replaces
 * firstLayerGradGpu + clipAdamPackedGpu (2 x 4096 x 200 pairs fits).
 */
export const GRAD_ADAM_MAX_WORK = 2 ** 23;

/** verifyPairsGpu, printing (to stderr, once per store) why the fused kernels are not used. */
export async function warnUnverified(store: ResidentStore): Promise<void> {
  const why = await verifyPairsGpu(store);
  if (why) console.error(`webgpu: reading pairs straight from the store failed its check (${why}); using tfjs gathers`);
}
