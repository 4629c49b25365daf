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

/** Initializes and returns the backend in use; safe to call repeatedly. */
export async function initBackend(name: BackendName | "auto" = "auto"): Promise<BackendName> {
  let want: BackendName = name === "auto" ? "wasm" : name;
  if (want === "webgpu") await import("@tensorflow/tfjs-backend-webgpu");
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
