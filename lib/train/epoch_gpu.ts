/**
 * A whole meta-training epoch of a one-layer model as one WebGPU command buffer, with
 * the store resident on the GPU. The four kernels of the fused step (pair features from
 * the store, the K-space kernel, the first layer's gradient, the clip and Adam) are the
 * same WGSL as the tfjs programs run (lib/model/pairs_gpu.ts, lib/train/kspace_gpu.ts);
 * here they are bound once per epoch, outside tfjs, and every step is four dispatches in
 * one compute pass. What changes from step to step (the step's offsets into the epoch's
 * upload, its users and pairs) comes from a uniform buffer holding one 256-byte slot per
 * step, selected by a dynamic offset, and each step's K-space output goes to its own slot
 * of one buffer, also by a dynamic offset, so the epoch's objectives and losses are all
 * there at the end. The parameters and Adam's moments alternate between two buffers
 * (the clip and Adam read one and write the other).
 *
 * Why: through tfjs every dispatch costs the host about 0.1 ms (a uniform buffer, a bind
 * group and the encoding, per dispatch), and on an H200 that, not the GPU, bounded a step
 * (bench/gpu_check.ts). Here a step costs the host four setPipeline/setBindGroup/dispatch
 * triples, and the epoch one submit and one readback.
 */
import * as tf from "@tensorflow/tfjs-core";
import { firstLayerGradWgsl, projectPairsWgsl } from "../model/pairs_gpu.ts";
import { INPUT_SCALE } from "../model/params.ts";
import {
  CLIP_ADAM_PACKED_WGSL,
  KSPACE_GPU_LIMITS,
  KSPACE_TRAIN_WGSL,
  type KspaceGpuOptions,
  kspaceOutputLength,
  kspaceScratchPerUser,
} from "./kspace_gpu.ts";

/**
 * What stays fixed over an epoch: the store's chunks, the flat parameters' layout, and the
 * K-space kernel's settings (as kspaceGpu takes them; `rhoOffset` counts only for mrm-p).
 */
export interface EpochSpec extends
  Pick<
    KspaceGpuOptions,
    | "k"
    | "personal"
    | "innerLr"
    | "innerSteps"
    | "firstOrder"
    | "objective"
    | "rpoRho"
    | "rpoGamma"
    | "thetaOffset"
    | "rhoOffset"
  > {
  /** the resident store's chunk buffers, rows [c * rowsPerChunk, ...) in chunk c */
  chunks: GPUBuffer[];
  rowsPerChunk: number;
  /** columns H */
  dim: number;
  /** parameters in the flat buffer: `small` values, then the first layer (K x H) */
  n: number;
  small: number;
}

/** One step of the epoch's upload: its data start at `at` (numbers, user ranges, rows); B users, P pairs. */
export interface EpochStep {
  at: number;
  B: number;
  P: number;
}

/**
 * Epochs run by runEpochGpu in this process (each is one readback; tests count round
 * trips with it), the host time spent building and submitting their commands, and, where
 * the device has timestamp queries, the GPU time of their passes (ms).
 */
export const epochGpuRuns = { count: 0, encodeMs: 0, gpuMs: 0 };

/** Numbers at the head of each step's data (DeviceTraining's layout). */
export const STEP_NUMBERS = 10;

const UNIFORMS = `
struct Uniforms {
  rowsPerChunk : i32, dim : i32, pairs : i32, rowsAt : i32, w1At : i32, scale : f32,
  nB : i32, nK : i32, nT : i32, nPairs : i32, scratch : i32, personal : i32, firstOrder : i32,
  meanObj : i32, thetaOff : i32, rhoOff : i32, metaOff : i32, innerLr : f32, rpoRho : f32,
  rpoGamma : f32, NAN : f32,
  small : i32, width : i32, thetaAt : i32, rhoAt : i32, n : i32, numAt : i32,
};`;
/** fields of Uniforms, in order, and whether each is a float */
const FIELDS: [string, boolean][] = (
  "rowsPerChunk dim pairs rowsAt w1At scale:f nB nK nT nPairs scratch personal firstOrder meanObj thetaOff rhoOff " +
  "metaOff innerLr:f rpoRho:f rpoGamma:f NAN:f small width thetaAt rhoAt n numAt"
).split(" ").map((f) => [f.replace(":f", ""), f.endsWith(":f")]);
const SLOT = 256;

type Binding = { name: string; type: "f32" | "i32"; access: "read" | "read_write"; dynamic?: boolean };

/** WGSL for a kernel body written for tfjs's preamble, with that preamble written out: uniforms at binding 0. */
function shader(body: string, bindings: Binding[], workgroup: number): string {
  const decls = bindings.map((b, i) =>
    `@group(0) @binding(${i + 1}) var<storage, ${b.access}> ${b.name}: array<${b.type}>;`
  ).join("\n");
  return `${UNIFORMS}
@group(0) @binding(0) var<uniform> uniforms: Uniforms;
${decls}
var<private> localId: vec3<u32>;
var<private> workgroupId: vec3<u32>;
var<private> numWorkgroups: vec3<u32>;
${body}
@compute @workgroup_size(${workgroup}, 1, 1)
fn mrmEntry(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>) {
  localId = lid;
  workgroupId = wid;
  numWorkgroups = nwg;
  main(i32((wid.y * nwg.x + wid.x) * ${workgroup}u + lid.x));
}
`;
}

interface Kernel {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
}

const pipelines = new WeakMap<GPUDevice, Map<string, Promise<Kernel>>>();

/** Compiles a kernel once per device (createComputePipelineAsync: a WGSL error rejects, naming the kernel). */
function kernel(device: GPUDevice, key: string, body: string, bindings: Binding[], workgroup: number): Promise<Kernel> {
  let cache = pipelines.get(device);
  if (!cache) pipelines.set(device, cache = new Map());
  let k = cache.get(key);
  if (!k) {
    k = (async () => {
      const layout = device.createBindGroupLayout({
        entries: [
          { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "uniform", hasDynamicOffset: true } },
          ...bindings.map((b, i) => ({
            binding: i + 1,
            visibility: GPUShaderStage.COMPUTE,
            buffer: {
              type: (b.access === "read" ? "read-only-storage" : "storage") as GPUBufferBindingType,
              hasDynamicOffset: b.dynamic ?? false,
            },
          })),
        ],
      });
      const module = device.createShaderModule({ code: shader(body, bindings, workgroup), label: key });
      try {
        const pipeline = await device.createComputePipelineAsync({
          layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
          compute: { module, entryPoint: "mrmEntry" },
          label: key,
        });
        return { pipeline, layout };
      } catch (e) {
        const info = await module.getCompilationInfo?.().catch(() => undefined);
        const why = info?.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join("; ");
        throw new Error(`epoch kernel ${key} did not compile: ${(e as Error).message}${why ? ` (${why})` : ""}`);
      }
    })();
    k.catch(() => cache!.delete(key));
    cache.set(key, k);
  }
  return k;
}

const chunkBindings = (c: number): Binding[] =>
  Array.from({ length: c }, (_, i) => ({ name: `X${i}`, type: "f32", access: "read" }));

/** The four kernels for a store of `chunks` chunks and a first layer of width `k`. */
function kernels(device: GPUDevice, chunks: number, k: number) {
  const rw = (name: string, dynamic = false): Binding => ({ name, type: "f32", access: "read_write", dynamic });
  const ro = (name: string, type: "f32" | "i32" = "f32", dynamic = false): Binding => ({
    name,
    type,
    access: "read",
    dynamic,
  });
  return Promise.all([
    kernel(device, `mrmEpochPairs_${chunks}_${k}`, projectPairsWgsl(chunks, k), [
      rw("result"),
      ...chunkBindings(chunks),
      ro("Packed", "i32"),
      ro("Params"),
    ], 64),
    kernel(device, "mrmEpochKspace", KSPACE_TRAIN_WGSL, [
      rw("result", true),
      ro("Z"),
      ro("Meta", "i32"),
      ro("Params"),
    ], KSPACE_GPU_LIMITS.users),
    kernel(device, `mrmEpochGrad_${chunks}`, firstLayerGradWgsl(chunks), [
      rw("result"),
      ...chunkBindings(chunks),
      ro("Packed", "i32"),
      ro("Dz", "f32", true),
    ], 64),
    kernel(device, "mrmEpochAdam", CLIP_ADAM_PACKED_WGSL, [
      rw("result"),
      ro("G"),
      ro("Packed", "i32"),
      ro("PMV"),
    ], 256),
  ]);
}

/** The most workgroups of one dimension a dispatch may have (WebGPU's default limit). */
const MAX_GROUPS = 65535;

/**
 * Whether runEpochGpu takes an epoch of this shape: the chunks (and the spill buffer, with
 * `spill`) bound with three more buffers; dispatch sizes.
 */
export function epochGpuFits(
  device: GPUDevice,
  spec: Pick<EpochSpec, "chunks" | "n">,
  maxPairs: number,
  spill = false,
): boolean {
  const buffers = device.limits?.maxStorageBuffersPerShaderStage ?? 8;
  return spec.chunks.length + (spill ? 1 : 0) + 3 <= buffers && maxPairs <= MAX_GROUPS &&
    Math.ceil(spec.n / 64) <= MAX_GROUPS;
}

/**
 * For a store the GPU keeps only in part: the epoch's steps in runs ("segments") whose
 * rows off the GPU fit one spill buffer of `rows` rows. Segment i covers steps
 * [starts[i], starts[i + 1]) and uploads `data[i]` (its rows, H values each) into the spill
 * buffer before its steps run; the steps' row numbers address the spill buffer as the
 * chunk after the resident ones (row kept + j). Each segment is its own submit, so its
 * upload lands after the previous segment's steps have read theirs.
 */
export interface EpochSpill {
  /** rows the spill buffer holds (at most rowsPerChunk) */
  rows: number;
  /** first step of each segment */
  starts: number[];
  /** each segment's rows */
  data: Float32Array[];
}

/**
 * Runs an epoch: `plan` holds every step's data (see EpochStep), `pmv` the parameters and
 * Adam's moments ([p, m, v], 3n values, the layout of DeviceTraining's buffers). Returns the
 * new [p, m, v], each step's objective and users' losses, and the host time spent building
 * and submitting the command buffers. Throws, with the GPU's message, on any validation or
 * out-of-memory error (nothing is then changed on the host). With `spill`, the store's
 * rows past the resident chunks go up segment by segment (see EpochSpill).
 */
export async function runEpochGpu(
  device: GPUDevice,
  spec: EpochSpec,
  plan: Int32Array,
  steps: EpochStep[],
  pmv: Float32Array,
  spill?: EpochSpill,
): Promise<
  { pmv: Float32Array; stats: { objective: number; losses: number[] }[]; encodeMs: number; gpuMs?: number }
> {
  const { k: K, n, dim: H } = spec;
  if (pmv.length !== 3 * n) throw new RangeError(`runEpochGpu: ${pmv.length} values for ${n} parameters`);
  if (steps.length === 0) return { pmv: pmv.slice(), stats: [], encodeMs: 0 };
  if (spill && (spill.rows > spec.rowsPerChunk || spill.starts[0] !== 0 || spill.starts.length !== spill.data.length)) {
    throw new RangeError("runEpochGpu: a spill of more rows than a chunk, or segments that do not start at step 0");
  }
  const bound = spec.chunks.length + (spill ? 1 : 0);
  const [pairs, ks, grad, adam] = await kernels(device, bound, K);
  const t0 = performance.now();
  const maxP = Math.max(1, ...steps.map((s) => s.P));
  const ksLen = (s: EpochStep) => kspaceOutputLength({ k: K, pairs: s.P, users: s.B, innerSteps: spec.innerSteps });
  const ksStride = Math.ceil(Math.max(...steps.map(ksLen)) * 4 / SLOT) * SLOT;
  const scratch = kspaceScratchPerUser(K, spec.innerSteps);

  // per step, one slot of uniforms
  const uniforms = new ArrayBuffer(steps.length * SLOT);
  const ints = new Int32Array(uniforms), floats = new Float32Array(uniforms);
  steps.forEach((s, i) => {
    const values: Record<string, number> = {
      rowsPerChunk: spec.rowsPerChunk,
      dim: H,
      pairs: s.P,
      rowsAt: s.at + STEP_NUMBERS + 4 * s.B,
      w1At: spec.small,
      scale: INPUT_SCALE,
      nB: s.B,
      nK: K,
      nT: spec.innerSteps,
      nPairs: s.P,
      scratch,
      personal: spec.personal ? 1 : 0,
      firstOrder: spec.firstOrder ? 1 : 0,
      meanObj: spec.objective === "mean" ? 1 : 0,
      thetaOff: spec.thetaOffset,
      rhoOff: spec.personal ? spec.rhoOffset : 0,
      metaOff: s.at + STEP_NUMBERS,
      innerLr: spec.innerLr,
      rpoRho: spec.rpoRho,
      rpoGamma: spec.rpoGamma,
      NAN: NaN,
      small: spec.small,
      width: K,
      thetaAt: spec.thetaOffset,
      rhoAt: spec.personal ? spec.rhoOffset : -1,
      n,
      numAt: s.at,
    };
    FIELDS.forEach(([f, isFloat], j) => {
      if (isFloat) floats[i * SLOT / 4 + j] = values[f];
      else ints[i * SLOT / 4 + j] = values[f];
    });
  });

  const made: GPUBuffer[] = [];
  const buffer = (size: number, usage: number, label: string) => {
    const b = device.createBuffer({ size: Math.max(16, Math.ceil(size / 4) * 4), usage, label });
    made.push(b);
    return b;
  };
  const S = GPUBufferUsage.STORAGE, CD = GPUBufferUsage.COPY_DST, CS = GPUBufferUsage.COPY_SRC;
  device.pushErrorScope("out-of-memory");
  device.pushErrorScope("validation");
  let scoped = true;
  let stamps: GPUQuerySet | undefined;
  try {
    const uBuf = buffer(uniforms.byteLength, GPUBufferUsage.UNIFORM | CD, "mrm epoch uniforms");
    const planBuf = buffer(plan.byteLength, S | CD, "mrm epoch plan");
    const zBuf = buffer(maxP * K * 4, S, "mrm epoch pair features");
    const ksBuf = buffer(steps.length * ksStride, S | CS, "mrm epoch K-space outputs");
    const gBuf = buffer(n * 4, S, "mrm epoch gradient");
    const pmvBufs = [
      buffer(3 * n * 4, S | CD | CS, "mrm epoch pmv A"),
      buffer(3 * n * 4, S | CD | CS, "mrm epoch pmv B"),
    ];
    device.queue.writeBuffer(uBuf, 0, uniforms);
    device.queue.writeBuffer(planBuf, 0, plan as Int32Array<ArrayBuffer>);
    device.queue.writeBuffer(pmvBufs[0], 0, pmv as Float32Array<ArrayBuffer>);

    const u = { buffer: uBuf, size: SLOT };
    const spillBuf = spill && buffer(spill.rows * H * 4, S | CD, "mrm epoch spilled rows");
    const chunks = [...spec.chunks, ...(spillBuf ? [spillBuf] : [])].map((b) => ({ buffer: b }));
    const group = (kern: Kernel, resources: GPUBufferBinding[]) =>
      device.createBindGroup({
        layout: kern.layout,
        entries: [u, ...resources].map((resource, binding) => ({ binding, resource })),
      });
    // [current pmv = A, current pmv = B]
    const pairGroups = pmvBufs.map((p) =>
      group(pairs, [{ buffer: zBuf }, ...chunks, { buffer: planBuf }, { buffer: p }])
    );
    const ksGroups = pmvBufs.map((p) =>
      group(ks, [{ buffer: ksBuf, size: ksStride }, { buffer: zBuf }, { buffer: planBuf }, { buffer: p }])
    );
    const gradGroup = group(grad, [{ buffer: gBuf }, ...chunks, { buffer: planBuf }, {
      buffer: ksBuf,
      size: ksStride,
    }]);
    const adamGroups = pmvBufs.map((p, i) =>
      group(adam, [{ buffer: pmvBufs[1 - i] }, { buffer: gBuf }, { buffer: planBuf }, { buffer: p }])
    );

    // one submit per segment (one in all without a spill), each after its rows' upload;
    // each segment's pass timed on the GPU where the device can
    const starts = spill?.starts ?? [0];
    if (device.features?.has("timestamp-query")) {
      stamps = device.createQuerySet({ type: "timestamp", count: 2 * starts.length });
    }
    const gradGroups = Math.ceil(n / 64);
    let encoder!: GPUCommandEncoder;
    starts.forEach((from, seg) => {
      const to = starts[seg + 1] ?? steps.length;
      if (seg > 0) device.queue.submit([encoder.finish()]);
      if (spill) device.queue.writeBuffer(spillBuf!, 0, spill.data[seg] as Float32Array<ArrayBuffer>);
      encoder = device.createCommandEncoder({ label: `mrm epoch, steps ${from}-${to - 1}` });
      const pass = encoder.beginComputePass(
        stamps
          ? {
            timestampWrites: { querySet: stamps, beginningOfPassWriteIndex: 2 * seg, endOfPassWriteIndex: 2 * seg + 1 },
          }
          : {},
      );
      for (let i = from; i < to; i++) {
        const s = steps[i], cur = i % 2, uo = i * SLOT, ko = i * ksStride;
        pass.setPipeline(pairs.pipeline);
        pass.setBindGroup(0, pairGroups[cur], [uo]);
        pass.dispatchWorkgroups(s.P);
        pass.setPipeline(ks.pipeline);
        pass.setBindGroup(0, ksGroups[cur], [uo, ko]);
        pass.dispatchWorkgroups(1);
        pass.setPipeline(grad.pipeline);
        pass.setBindGroup(0, gradGroup, [uo, ko]);
        pass.dispatchWorkgroups(gradGroups);
        pass.setPipeline(adam.pipeline);
        pass.setBindGroup(0, adamGroups[cur], [uo]);
        pass.dispatchWorkgroups(1);
      }
      pass.end();
    });
    const last = pmvBufs[steps.length % 2];
    const readP = buffer(3 * n * 4, GPUBufferUsage.MAP_READ | CD, "mrm epoch pmv readback");
    const readK = buffer(steps.length * ksStride, GPUBufferUsage.MAP_READ | CD, "mrm epoch stats readback");
    encoder.copyBufferToBuffer(last, 0, readP, 0, 3 * n * 4);
    encoder.copyBufferToBuffer(ksBuf, 0, readK, 0, steps.length * ksStride);
    const readT = stamps && buffer(16 * starts.length, GPUBufferUsage.MAP_READ | CD, "mrm epoch timestamps");
    if (stamps) {
      const resolved = buffer(16 * starts.length, GPUBufferUsage.QUERY_RESOLVE | CS, "mrm epoch timestamps resolved");
      encoder.resolveQuerySet(stamps, 0, 2 * starts.length, resolved, 0);
      encoder.copyBufferToBuffer(resolved, 0, readT!, 0, 16 * starts.length);
    }
    device.queue.submit([encoder.finish()]);
    const encodeMs = performance.now() - t0;
    epochGpuRuns.encodeMs += encodeMs;
    scoped = false;
    const [validation, memory] = await Promise.all([device.popErrorScope(), device.popErrorScope()]);
    const error = memory ?? validation;
    if (error) throw new Error(`the epoch's GPU work failed: ${error.message}`);
    epochGpuRuns.count++;
    await Promise.all([readP, readK, ...(readT ? [readT] : [])].map((b) => b.mapAsync(GPUMapMode.READ)));
    const out = new Float32Array(readP.getMappedRange().slice(0));
    const ksOut = new Float32Array(readK.getMappedRange().slice(0));
    let gpuMs: number | undefined;
    if (readT) {
      const t = new BigUint64Array(readT.getMappedRange().slice(0));
      gpuMs = 0;
      for (let i = 0; i < starts.length; i++) gpuMs += Number(t[2 * i + 1] - t[2 * i]) / 1e6;
      epochGpuRuns.gpuMs += gpuMs;
    }
    const stats = steps.map((s, i) => {
      const at = i * ksStride / 4 + s.P * K + 2 * K;
      return { objective: ksOut[at], losses: Array.from(ksOut.subarray(at + 1, at + 1 + s.B)) };
    });
    return { pmv: out, stats, encodeMs, gpuMs };
  } catch (e) {
    // an exception before the scopes were popped leaves them pushed
    if (scoped) await Promise.all([device.popErrorScope(), device.popErrorScope()]).catch(() => {});
    throw e;
  } finally {
    made.forEach((b) => b.destroy());
    stamps?.destroy();
  }
}

/** The webgpu backend's device (the store's buffers live there). */
export function tfjsDevice(): GPUDevice {
  // deno-lint-ignore no-explicit-any
  return (tf.backend() as any).device as GPUDevice;
}
