/**
 * The host's cost of GPU dispatches, which bounded webgpu training on an H200: 1,000
 * small kernels sent as tfjs ops (each makes its uniforms and bind group and is encoded
 * and flushed by tfjs) against 1,000 dispatches encoded into one compute pass with a
 * bind group made once and a dynamic uniform offset per dispatch, as an epoch is
 * (lib/train/epoch_gpu.ts). Only the host's time is measured: neither waits for the GPU.
 * On a software adapter (llvmpipe) tfjs's flushes also run its kernels, so its side is an
 * upper bound there. Measured on the 2-core CI machine with llvmpipe: about 50x less host
 * time per dispatch in one pass (3 us against 125-160 us).
 */
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../lib/backend.ts";

await initBackend("webgpu");
// deno-lint-ignore no-explicit-any
const device = (tf.backend() as any).device as GPUDevice;
const N = 1000;
const a = tf.tensor1d(new Float32Array(2048).fill(1));

const module = device.createShaderModule({
  code: `@group(0) @binding(0) var<uniform> u: vec4<f32>;
@group(0) @binding(1) var<storage, read_write> r: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) { r[g.x] = r[g.x] + u.x; }`,
});
const layout = device.createBindGroupLayout({
  entries: [
    { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "uniform", hasDynamicOffset: true } },
    { binding: 1, visibility: GPUShaderStage.COMPUTE, buffer: { type: "storage" } },
  ],
});
const pipeline = device.createComputePipeline({
  layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
  compute: { module, entryPoint: "main" },
});
const slots = device.createBuffer({ size: 256 * 8, usage: GPUBufferUsage.UNIFORM });
const data = device.createBuffer({ size: 2048 * 4, usage: GPUBufferUsage.STORAGE });
const group = device.createBindGroup({
  layout,
  entries: [{ binding: 0, resource: { buffer: slots, size: 16 } }, { binding: 1, resource: { buffer: data } }],
});

Deno.bench({
  name: `${N} dispatches as tfjs ops`,
  group: "host cost of dispatches",
  baseline: true,
  n: 20,
  warmup: 3,
  fn: async (b) => {
    b.start();
    const outs: tf.Tensor[] = [];
    for (let i = 0; i < N; i++) outs.push(tf.add(a, a));
    b.end();
    await outs[N - 1].data();
    outs.forEach((o) => o.dispose());
  },
});

Deno.bench({
  name: `${N} dispatches in one compute pass`,
  group: "host cost of dispatches",
  n: 20,
  warmup: 3,
  fn: async (b) => {
    b.start();
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    for (let i = 0; i < N; i++) {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group, [(i % 8) * 256]);
      pass.dispatchWorkgroups(32);
    }
    pass.end();
    const commands = encoder.finish();
    b.end();
    device.queue.submit([commands]);
    await device.queue.onSubmittedWorkDone();
  },
});
