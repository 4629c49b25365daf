/**
 * What the WGSL kernel tests share: a device on the first adapter (llvmpipe in CI), buffer
 * uploads and a one-kernel runner. The kernel tests are spread over three files so that
 * `deno test --parallel` compiles them on every core: a software adapter takes 10-40 s
 * per large kernel when its shader cache is empty.
 */

// deno-lint-ignore no-explicit-any
export type Gpu = any;

/** A device on the first adapter, with the adapter's workgroup-memory limit. */
export async function device(): Promise<Gpu> {
  // deno-lint-ignore no-explicit-any
  const adapter: any = await (navigator as any).gpu.requestAdapter();
  return await adapter.requestDevice({
    requiredLimits: { maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize },
  });
}

/** A GPU buffer holding `data` (storage, copy in and out, unless `usage` says otherwise). */
export function upload(gpu: Gpu, data: ArrayBufferView, usage = 0x80 | 0x8 | 0x4): Gpu {
  const b = gpu.createBuffer({ size: Math.max(16, data.byteLength), usage });
  gpu.queue.writeBuffer(b, 0, data);
  return b;
}

/** Runs one compute shader with `buffers` bound in order; returns the first `bytes` of `out` as floats. */
export async function runKernel(
  gpu: Gpu,
  code: string,
  buffers: Gpu[],
  grid: [number, number?, number?],
  out: Gpu,
  bytes: number,
): Promise<Float32Array> {
  const pipeline = gpu.createComputePipeline({
    layout: "auto",
    compute: { module: gpu.createShaderModule({ code }), entryPoint: "main" },
  });
  const read = gpu.createBuffer({ size: bytes, usage: 0x1 | 0x8 });
  const enc = gpu.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(
    0,
    gpu.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
    }),
  );
  pass.dispatchWorkgroups(...grid);
  pass.end();
  enc.copyBufferToBuffer(out, 0, read, 0, bytes);
  gpu.queue.submit([enc.finish()]);
  await read.mapAsync(1);
  const result = new Float32Array(read.getMappedRange().slice(0));
  read.unmap();
  read.destroy();
  return result;
}
