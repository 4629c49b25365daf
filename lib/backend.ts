/**
 * Picks the tfjs backend for MRM's tensor work. `auto` means wasm, also on machines
 * with a GPU: measured on an NVIDIA H200 (bench/gpu_check.ts), the webgpu backend
 * gave the same weights (max difference 5.6e-9 after 3 epochs) but took 13.5 s per
 * PRISM-size epoch against 0.21 s on wasm, and 41 s per evaluation against 0.22 s —
 * each outer step is a small projection plus host round trips, which a GPU cannot
 * amortize. `cpu`, `wasm` or `webgpu` force one. (The ONNX encoder, whose work is
 * large matrix products, does use WebGPU on a real GPU: lib/encoder/session.ts.)
 */
import * as tf from "@tensorflow/tfjs-core";
import { gpuAdapter } from "./encoder/device.ts";
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
