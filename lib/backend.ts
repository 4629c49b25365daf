/**
 * Picks the tfjs backend for MRM's tensor work. `cpu`, `wasm` or `webgpu` force one;
 * `auto` is wasm unless the caller knows the work ahead (chooseBackend), in which case it
 * is webgpu where a hardware GPU is measured to finish the run sooner (autoRule). (The
 * encoder picks its own device: lib/encoder/device.ts.)
 */
import * as tf from "@tensorflow/tfjs-core";
import { gpuAdapter } from "./encoder/device.ts";
import { ConfigError } from "./errors.ts";
import { setResidentBudget } from "./model/project.ts";
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs-backend-wasm";

/** Backends a user may ask for. */
export type BackendName = "cpu" | "wasm" | "webgpu";

/** Whether a non-fallback WebGPU adapter exists (software adapters do not count). */
export async function hasHardwareGpu(): Promise<boolean> {
  return (await gpuAdapter()) !== undefined;
}

let webgpuRegistered = false;
/** Storage buffers per shader stage asked of the device (the pair kernels bind chunks + 4). */
const MAX_STORAGE_BUFFERS = 32;

/**
 * Registers tfjs's webgpu backend with a device that also asks for the adapter's number
 * of storage buffers per shader stage (tfjs asks for the default, 8): the kernels that
 * read pair rows straight from the store bind every chunk of it at once
 * (lib/model/pairs_gpu.ts). Otherwise the device is the one tfjs would make.
 */
async function registerWebgpu(): Promise<void> {
  const { WebGPUBackend } = await import("@tensorflow/tfjs-backend-webgpu");
  if (webgpuRegistered) return;
  webgpuRegistered = true;
  avoidSplitK();
  tf.removeBackend("webgpu");
  tf.registerBackend("webgpu", async () => {
    // deno-lint-ignore no-explicit-any
    const adapter = await (navigator as any).gpu.requestAdapter({ powerPreference: "high-performance" });
    const l = adapter.limits;
    const device = await adapter.requestDevice({
      requiredFeatures: adapter.features.has("timestamp-query") ? ["timestamp-query"] : [],
      requiredLimits: {
        maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
        maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
        maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
        maxBufferSize: l.maxBufferSize,
        maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
        maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
        // capped: tfjs also sizes its own multi-input kernels (concat) by this limit, and an
        // NVIDIA adapter reports 524288, past what a bind group holds
        maxStorageBuffersPerShaderStage: Math.min(l.maxStorageBuffersPerShaderStage, MAX_STORAGE_BUFFERS),
      },
    });
    return new WebGPUBackend(device, adapter.info);
  }, 3);
}

const MATMUL_TYPE = "WEBGPU_MATMUL_PROGRAM_TYPE";
/** tfjs-backend-webgpu's MatMulProgramType.MatMulSmallOutputSizeProgram */
const SMALL_OUTPUT_MATMUL = 2;

/**
 * tfjs-webgpu multiplies a small output with a long inner dimension (>= 2,000, few
 * workgroups) by "split-K": slices of the inner dimension added into the output with
 * atomic compare-exchange loops. On the adapter CI runs on (llvmpipe, through Deno's
 * wgpu) that gave wrong products, silently: [200, 2048] x [2048, 4]^T was off by more than
 * its own size (tests/backend_test.ts), which is the shape of a 4-base model's step at
 * H=2048 and above, and made mrm-p's general GPU step drift from wasm. This wraps tfjs's
 * BatchMatMul kernel so that exactly those products take tfjs's small-output program
 * (small tiles, no atomics), the one tfjs picks for the same shapes with a short inner
 * dimension. Every other product is tfjs's own choice.
 */
function avoidSplitK(): void {
  const config = tf.getKernel("BatchMatMul", "webgpu");
  if (!config) return;
  const kernelFunc = config.kernelFunc;
  tf.unregisterKernel("BatchMatMul", "webgpu");
  tf.registerKernel({
    ...config,
    kernelFunc: (args) => {
      const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
      const env = tf.env();
      const ra = a.shape.length, rb = b.shape.length;
      const outerA = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
      const outerB = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
      const inner = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
      const batch = Math.max(tf.util.sizeFromShape(a.shape.slice(0, -2)), tf.util.sizeFromShape(b.shape.slice(0, -2)));
      // tfjs's own choice (batchMatMulImpl): few 32 x 32 workgroups, one batch, a long inner dimension
      const flag = env.getNumber("WEBGPU_THRESHOLD_TO_INCREASE_WORKGROUPS_FOR_MATMUL");
      // deno-lint-ignore no-explicit-any
      const threshold = flag > 0 ? flag : (args.backend as any).thresholdToIncreaseWorkgroups;
      const groups = batch * Math.ceil(outerA / 32) * Math.ceil(outerB / 32);
      const few = groups <= threshold || (outerA <= 8 && groups <= 2 * threshold);
      const splitK = env.getNumber(MATMUL_TYPE) < 0 && few && batch * outerA * outerB > 128 && batch === 1 &&
        inner >= 2000;
      if (!splitK) return kernelFunc(args);
      const was = env.getNumber(MATMUL_TYPE);
      env.set(MATMUL_TYPE, SMALL_OUTPUT_MATMUL);
      try {
        return kernelFunc(args);
      } finally {
        env.set(MATMUL_TYPE, was);
      }
    },
  });
}

/** Initializes and returns the backend in use; safe to call repeatedly. */
export async function initBackend(name: BackendName | "auto" = "auto"): Promise<BackendName> {
  let want: BackendName = name === "auto" ? "wasm" : name;
  if (want === "webgpu") await registerWebgpu();
  if (tf.getBackend() !== want) {
    const ok = await tf.setBackend(want);
    if (!ok) {
      if (name !== "auto") throw new Error(`--backend ${name}: the tfjs ${name} backend could not be initialized`);
      want = "wasm";
      await tf.setBackend(want);
    }
  }
  await tf.ready();
  return want;
}

/** What a run will do, for autoRule. */
export interface WorkPlan {
  /** meta-training epochs (0 for an evaluation alone) */
  epochs: number;
  /** users meta-trained on */
  seenUsers: number;
  /** evaluations of all users */
  evaluations: number;
  /** users evaluated */
  users: number;
  /** bytes of the embedding store */
  storeBytes: number;
  /** the model has one layer (K base functions straight from the embeddings) */
  oneLayer: boolean;
  /** users per outer step */
  usersPerStep: number;
}

/**
 * The rule `--backend auto` uses, from bench/gpu_check.ts on an NVIDIA H200 (wasm and
 * webgpu in one process, README "webgpu training on a GPU"; bench/results/gpu_check_h200.json):
 * - a webgpu epoch (one command buffer) saves about 0.35 ms per seen user over wasm
 *   (0.38-0.76 ms measured at 1,000 users, 0.52-0.54 ms at 10,000, 0.7 ms for mrm-p) and costs
 *   about 12 ms more (the epoch's one readback);
 * - an evaluation saves about 0.25 ms per user (0.27 s vs 0.016 s for 1,000 users);
 * - webgpu costs about 2.5 s once (the kernels' first compile and checks, the first
 *   epoch's check against tfjs) and 0.45 s per GiB of store (the upload, and the first
 *   epoch's larger check on a larger store).
 * So webgpu when a hardware adapter exists, the step is the fused one (one layer, at
 * most 64 users a step: a general GPU step is slower than wasm), and the savings exceed
 * the one-off cost.
 */
export function autoRule(plan: WorkPlan, hardwareGpu: boolean): { backend: BackendName; reason: string } {
  if (!hardwareGpu) return { backend: "wasm", reason: "no hardware WebGPU adapter" };
  if (!plan.oneLayer || plan.usersPerStep > 64) {
    return {
      backend: "wasm",
      reason: "webgpu's fused step needs a one-layer model and at most 64 users a step; its general step is slower",
    };
  }
  const saved = plan.epochs * (3.5e-4 * plan.seenUsers - 0.012) + plan.evaluations * 2.5e-4 * plan.users;
  const cost = 2.5 + 0.45 * plan.storeBytes / 2 ** 30;
  const why = `expected to save ${saved.toFixed(1)} s against ${
    cost.toFixed(1)
  } s of set-up (${plan.epochs} epochs x ${plan.seenUsers} seen users, ${plan.evaluations} evaluations x ${plan.users} users, ${
    (plan.storeBytes / 2 ** 30).toFixed(2)
  } GiB)`;
  return saved > cost ? { backend: "webgpu", reason: why } : { backend: "wasm", reason: `webgpu ${why}: not worth it` };
}

/**
 * `--backend` with the run's work known: a forced backend as initBackend, or for `auto`
 * the backend autoRule picks, initialized. Returns it and, for `auto`, why.
 */
export async function chooseBackend(
  name: BackendName | "auto",
  plan: WorkPlan,
): Promise<{ backend: BackendName; reason?: string }> {
  if (name !== "auto") return { backend: await initBackend(name) };
  const { backend, reason } = autoRule(plan, await hasHardwareGpu());
  try {
    return { backend: await initBackend(backend), reason };
  } catch (e) {
    return { backend: await initBackend("wasm"), reason: `webgpu failed to start (${(e as Error).message})` };
  }
}

/**
 * `--gpu_store_gib X`: at most X GiB of the embedding store kept on the GPU (webgpu); the
 * rest goes up with the steps that need it (lib/model/project.ts). Undefined leaves the
 * whole store on the GPU where it fits.
 */
export function applyGpuStoreFlag(value: unknown): void {
  if (value === undefined) return;
  const gib = Number(value);
  if (typeof value !== "string" || value.trim() === "" || !(gib > 0) || !Number.isFinite(gib)) {
    throw new ConfigError(`--gpu_store_gib expects a positive number of GiB, got '${value}'`);
  }
  setResidentBudget(gib * 2 ** 30);
}
