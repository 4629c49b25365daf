/**
 * What one GPU-to-host round trip costs in this Deno, against a submit that is not
 * waited on: the reason meta-training on webgpu reads nothing back per step
 * (lib/train/device.ts). On the software adapter and on the H200 machine alike, Deno
 * resolves `mapAsync` about 11-12 ms after the work is done, whatever its size.
 *
 *   deno bench -A bench/readback_bench.ts
 */
const adapter = await navigator.gpu?.requestAdapter();
const device = adapter ? await adapter.requestDevice() : undefined;
if (device) {
  const src = device.createBuffer({
    size: 256,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  const dst = device.createBuffer({ size: 256, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const copy = () => {
    device.queue.writeBuffer(src, 0, new Float32Array([1]));
    const e = device.createCommandEncoder();
    e.copyBufferToBuffer(src, 0, dst, 0, 256);
    device.queue.submit([e.finish()]);
  };
  Deno.bench({ name: "submit a copy, not waited on", group: "round trip", baseline: true }, () => {
    const e = device.createCommandEncoder();
    e.copyBufferToBuffer(src, 0, src, 128, 4);
    device.queue.submit([e.finish()]);
  });
  Deno.bench({ name: "submit a copy and read 256 bytes back (mapAsync)", group: "round trip" }, async () => {
    copy();
    await dst.mapAsync(GPUMapMode.READ);
    dst.unmap();
  });
  Deno.bench({ name: "submit a copy and wait for the queue (onSubmittedWorkDone)", group: "round trip" }, async () => {
    copy();
    await device.queue.onSubmittedWorkDone();
  });
} else {
  console.log("no WebGPU adapter: nothing to measure");
}
