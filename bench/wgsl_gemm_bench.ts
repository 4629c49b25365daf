/**
 * The WGSL GEMM alone (Y = X . W^T, bf16 weights widened in the shader, f32 arithmetic)
 * next to onnxruntime-web's webgpu MatMul (f16 weights, as the ONNX encoder path runs
 * it) on the same adapter, for the projection shapes of Skywork-Reward-V2-Qwen3-0.6B and
 * -Llama-3.1-8B at 1024 tokens. TFLOP/s = 2*M*N*K / time. On a software adapter only a
 * small shape runs (llvmpipe timings say nothing about GPUs).
 *
 *   deno bench -A bench/wgsl_gemm_bench.ts
 */
import * as ort from "onnxruntime-web/webgpu";
import { gpuAdapter } from "../lib/encoder/device.ts";
import { GEMM_TILES, gemmShader, tileName } from "../lib/encoder/webgpu/shaders.ts";
import { DT, encodeModel, node, valueInfo } from "../lib/encoder/hf/onnx_build.ts";
import { onnx } from "../lib/encoder/hf/onnx_build.ts";

const hardware = await gpuAdapter();
const M = hardware ? 1024 : 64;
const SHAPES: [string, number, number][] = hardware
  ? [
    ["0.6b qkv", 4096, 1024],
    ["0.6b gate", 3072, 1024],
    ["0.6b down", 1024, 3072],
    ["8b qkv", 6144, 4096],
    ["8b o", 4096, 4096],
    ["8b gate", 14336, 4096],
    ["8b down", 4096, 14336],
  ]
  : [["small", 256, 256]];

// deno-lint-ignore no-explicit-any
const adapter: any = await (navigator as any).gpu.requestAdapter({ powerPreference: "high-performance" });
const gpu = await adapter.requestDevice({
  requiredLimits: {
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxBufferSize: adapter.limits.maxBufferSize,
  },
});
const tiles = hardware ? GEMM_TILES : GEMM_TILES.slice(0, 1);
const rand = (n: number) => Float32Array.from({ length: n }, (_, i) => (((i * 2654435761) >>> 0) % 2000) / 1000 - 1);

for (const [name, N, K] of SHAPES) {
  const flops = 2 * M * N * K;
  const X = gpu.createBuffer({ size: M * K * 4, usage: 0x80 | 0x8 });
  gpu.queue.writeBuffer(X, 0, rand(M * K));
  const wf = rand(N * K);
  const bf16 = new Uint16Array(N * K);
  new Uint32Array(wf.buffer).forEach((u, i) => (bf16[i] = u >>> 16));
  const W = gpu.createBuffer({ size: N * K * 2, usage: 0x80 | 0x8 });
  gpu.queue.writeBuffer(W, 0, bf16);
  const Y = gpu.createBuffer({ size: M * N * 4, usage: 0x80 });
  const U = gpu.createBuffer({ size: 16, usage: 0x40 | 0x8 });
  gpu.queue.writeBuffer(U, 0, new Uint32Array([M, N, K, 0]));
  for (const t of tiles) {
    const module = gpu.createShaderModule({ code: gemmShader("BF16", "plain", t) });
    const pipeline = gpu.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
    const group = gpu.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [U, X, W, Y].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    Deno.bench({
      name: `wgsl ${tileName(t)}`,
      group: `${name} [${M}x${K}]x[${K}x${N}] (${(flops / 1e9).toFixed(1)} GFLOP)`,
      baseline: t === tiles[0],
      async fn() {
        const enc = gpu.createCommandEncoder();
        const pass = enc.beginComputePass();
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, group);
        pass.dispatchWorkgroups(Math.ceil(N / t.bn), Math.ceil(M / t.bm));
        pass.end();
        gpu.queue.submit([enc.finish()]);
        await gpu.queue.onSubmittedWorkDone();
      },
    });
  }
  // onnxruntime-web: MatMul with an f16 [K, N] initializer, f16 activations in, output kept on the GPU
  const wt = new Uint16Array(K * N);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) wt[k * N + n] = bf16[n * K + k];
  const model = encodeModel({
    name: "matmul",
    node: [node("MatMul", ["x", "w"], ["y"])],
    initializer: [
      onnx.TensorProto.create({ name: "w", dims: [K, N], dataType: DT.FLOAT16, rawData: new Uint8Array(wt.buffer) }),
    ],
    input: [valueInfo("x", DT.FLOAT16, [M, K])],
    output: [valueInfo("y", DT.FLOAT16, [M, N])],
  });
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ["webgpu"],
    preferredOutputLocation: "gpu-buffer",
  }).catch(() => undefined);
  if (session) {
    const x = new ort.Tensor("float16", new Uint16Array(M * K).fill(0x3c00), [M, K]);
    Deno.bench({
      name: "onnxruntime-web MatMul (f16)",
      group: `${name} [${M}x${K}]x[${K}x${N}] (${(flops / 1e9).toFixed(1)} GFLOP)`,
      async fn() {
        const out = await session.run({ x });
        await out.y.getData(true);
      },
    });
  }
}
