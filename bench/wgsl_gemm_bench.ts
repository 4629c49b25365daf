/**
 * The WGSL GEMM alone (Y = X . W^T, bf16 weights widened in the shader, f32 arithmetic)
 * for every candidate tile, next to onnxruntime-web's webgpu MatMul (f16 weights, as the
 * ONNX encoder path runs it) on the same adapter, for the projection shapes of
 * Skywork-Reward-V2-Qwen3-0.6B and -Llama-3.1-8B at 256 and 2048 tokens. Each group's
 * name carries its GFLOP: TFLOP/s = GFLOP / (time in ms) / 1000 (bench/gemm_table.ts
 * turns `deno bench --json` output into that table). The "gate+up" rows are the fused
 * SwiGLU kernel (two products). On a software adapter only a small shape runs (llvmpipe
 * timings say nothing about GPUs).
 *
 *   deno bench -A bench/wgsl_gemm_bench.ts
 */
import * as ort from "onnxruntime-web/webgpu";
import { gpuAdapter } from "../lib/encoder/device.ts";
import { GEMM_TILES, gemmShader, type GemmTile, SWIGLU_TILES, tileName } from "../lib/encoder/webgpu/shaders.ts";
import { DT, encodeModel, node, onnx, valueInfo } from "../lib/encoder/hf/onnx_build.ts";

const hardware = await gpuAdapter();
// MRM_GEMM_BENCH=ort times only onnxruntime-web (its sessions take a while to create); =wgsl only ours
const only = Deno.env.get("MRM_GEMM_BENCH");
// larger tiles the engine does not use yet, timed to see whether they would pay
const EXTRA_TILES: GemmTile[] = [
  { bm: 128, bn: 128, bk: 32, tm: 8, tn: 8 },
  { bm: 64, bn: 128, bk: 16, tm: 4, tn: 8 },
  { bm: 128, bn: 256, bk: 16, tm: 8, tn: 16 },
];
const EXTRA_SWIGLU: GemmTile[] = [{ bm: 128, bn: 128, bk: 16, tm: 8, tn: 8 }, {
  bm: 64,
  bn: 128,
  bk: 16,
  tm: 4,
  tn: 8,
}];
const TOKENS = hardware ? [256, 2048] : [64];
// [name, N, K, fused gate+up]
const SHAPES: [string, number, number, boolean][] = hardware
  ? [
    ["0.6b qkv", 4096, 1024, false],
    ["0.6b gate+up", 3072, 1024, true],
    ["0.6b down", 1024, 3072, false],
    ["8b qkv", 6144, 4096, false],
    ["8b o", 4096, 4096, false],
    ["8b gate+up", 14336, 4096, true],
    ["8b down", 4096, 14336, false],
  ]
  : [["small", 256, 256, false], ["small gate+up", 256, 256, true]];

// deno-lint-ignore no-explicit-any
const adapter: any = await (navigator as any).gpu.requestAdapter({ powerPreference: "high-performance" });
const gpu = await adapter.requestDevice({
  requiredLimits: {
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxBufferSize: adapter.limits.maxBufferSize,
    maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
  },
});
// fixed iteration counts keep the whole file within a GPU session's few minutes
const runs = { n: 20, warmup: 3 };
const rand = (n: number) => Float32Array.from({ length: n }, (_, i) => (((i * 2654435761) >>> 0) % 2000) / 1000 - 1);

for (const [name, N, K, fused] of SHAPES) {
  const wf = rand(N * K);
  const bf16 = new Uint16Array(N * K);
  new Uint32Array(wf.buffer).forEach((u, i) => (bf16[i] = u >>> 16));
  const W = gpu.createBuffer({ size: N * K * 2, usage: 0x80 | 0x8 });
  gpu.queue.writeBuffer(W, 0, bf16);
  for (const M of TOKENS) {
    const flops = 2 * M * N * K * (fused ? 2 : 1);
    const group = `${name} [${M}x${K}]x[${K}x${N}] (${(flops / 1e9).toFixed(2)} GFLOP)`;
    const X = gpu.createBuffer({ size: M * K * 4, usage: 0x80 | 0x8 });
    gpu.queue.writeBuffer(X, 0, rand(M * K));
    const Y = gpu.createBuffer({ size: M * N * 4, usage: 0x80 });
    const U = gpu.createBuffer({ size: 16, usage: 0x40 | 0x8 });
    gpu.queue.writeBuffer(U, 0, new Uint32Array([M, N, K, 0]));
    const tiles = only === "ort" ? [] : [
      ...(fused ? SWIGLU_TILES : GEMM_TILES),
      ...(hardware ? (fused ? EXTRA_SWIGLU : EXTRA_TILES) : []),
    ];
    for (const t of tiles) {
      const module = gpu.createShaderModule({ code: gemmShader("BF16", fused ? "swiglu" : "plain", t) });
      const pipeline = gpu.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
      const group_ = gpu.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [U, X, W, Y, ...(fused ? [W] : [])].map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
      Deno.bench({
        name: `wgsl ${tileName(t)}`,
        group,
        baseline: t === (fused ? SWIGLU_TILES : GEMM_TILES).at(-1),
        ...runs,
        async fn() {
          const enc = gpu.createCommandEncoder();
          const pass = enc.beginComputePass();
          pass.setPipeline(pipeline);
          pass.setBindGroup(0, group_);
          pass.dispatchWorkgroups(Math.ceil(N / t.bn), Math.ceil(M / t.bm));
          pass.end();
          gpu.queue.submit([enc.finish()]);
          await gpu.queue.onSubmittedWorkDone();
        },
      });
    }
    // onnxruntime-web's f16 MatMul needs shader-f16
    if (fused || !hardware?.f16 || only === "wgsl") continue;
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
        group,
        ...runs,
        async fn() {
          const out = await session.run({ x });
          await out.y.getData(true);
        },
      });
    }
  }
}
