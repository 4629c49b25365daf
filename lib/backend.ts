/**
 * Picks the tfjs backend once: webgpu when a real (non-fallback) GPU adapter
 * exists, wasm otherwise; `cpu`, `wasm` or `webgpu` force one.
 */
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs-backend-wasm";

/** Backends a user may ask for. */
export type BackendName = "cpu" | "wasm" | "webgpu";

/** Whether a non-fallback WebGPU adapter exists (software adapters do not count). */
export async function hasHardwareGpu(): Promise<boolean> {
  // deno-lint-ignore no-explicit-any
  const gpu = (globalThis.navigator as any)?.gpu;
  if (!gpu) return false;
  try {
    const adapter = await gpu.requestAdapter();
    if (!adapter) return false;
    const info = adapter.info ?? {};
    if (adapter.isFallbackAdapter || info.isFallbackAdapter) return false;
    return !/llvmpipe|lavapipe|swiftshader|software/i.test(`${info.description ?? ""} ${info.device ?? ""}`);
  } catch {
    return false;
  }
}

/** Initializes and returns the backend in use; safe to call repeatedly. */
export async function initBackend(name: BackendName | "auto" = "auto"): Promise<BackendName> {
  let want: BackendName = name === "auto" ? ((await hasHardwareGpu()) ? "webgpu" : "wasm") : name;
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
