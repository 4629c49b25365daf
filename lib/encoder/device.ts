/** Which onnxruntime-web execution provider runs the encoder, and what the GPU offers. */

/** Execution providers this toolkit uses. */
export type Device = "wasm" | "webgpu";

/** The WebGPU adapter, when a real (non-software) one exists, and whether it computes in f16. */
export async function gpuAdapter(): Promise<{ name: string; f16: boolean } | undefined> {
  // deno-lint-ignore no-explicit-any
  const gpu = (globalThis.navigator as any)?.gpu;
  if (!gpu) return undefined;
  try {
    const adapter = await gpu.requestAdapter();
    if (!adapter) return undefined;
    const info = adapter.info ?? {};
    const name = `${info.vendor ?? ""} ${info.description ?? ""} ${info.device ?? ""}`.trim();
    if (adapter.isFallbackAdapter || info.isFallbackAdapter) return undefined;
    if (/llvmpipe|lavapipe|swiftshader|software/i.test(name)) return undefined;
    return { name, f16: adapter.features.has("shader-f16") };
  } catch {
    return undefined;
  }
}

/** Picks the device: webgpu on a hardware adapter, else wasm. */
export async function pickDevice(device: Device | "auto" = "auto"): Promise<Device> {
  if (device !== "auto") return device;
  return (await gpuAdapter()) ? "webgpu" : "wasm";
}
