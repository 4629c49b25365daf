/**
 * The WGSL GEMM alone (Y = X . W^T, bf16 weights widened in the shader, f32 arithmetic)
 * for every candidate tile, next to onnxruntime-web's webgpu MatMul (f16 weights, as the
 * ONNX encoder path runs it) on the same adapter, for the projection shapes of
 * Skywork-Reward-V2-Qwen3-0.6B and -Llama-3.1-8B at 256 and 2048 tokens. Each group's
 * name carries its GFLOP: TFLOP/s = GFLOP / (time in ms). Wall times include Deno's ~12 ms
 * submit-and-wait round trip; with MRM_GEMM_GPU_TIMES=FILE the kernels' own GPU times
 * (timestamp queries) are written there, and bench/gemm_table.ts turns that file, or
 * `deno bench --json` output, into a TFLOP/s table. Deno bench runs each kernel with idle
 * gaps, so GPU clocks may be down: to rank kernels against each other, use
 * bench/gemm_gpu_check.ts (warm clocks, back-to-back dispatches). The "gate+up" rows are the fused
 * SwiGLU kernel (two products). On a software adapter only a small shape runs (llvmpipe
 * timings say nothing about GPUs).
 *
 *   deno bench -A bench/wgsl_gemm_bench.ts
 */
import * as ort from "onnxruntime-web/webgpu";
import { gpuAdapter } from "../lib/encoder/device.ts";
import {
  doubleBuffered,
  F16_TILES,
  GEMM_TILES,
  type GemmArith,
  gemmShader,
  type GemmTile,
  LARGE_GEMM_TILES,
  strided,
  SWIGLU_TILES,
  tileName,
} from "../lib/encoder/webgpu/shaders.ts";
import { DT, encodeModel, node, onnx, valueInfo } from "../lib/encoder/hf/onnx_build.ts";

const hardware = await gpuAdapter();
// MRM_GEMM_BENCH=ort times only onnxruntime-web (its sessions take a while to create); =wgsl only ours
const only = Deno.env.get("MRM_GEMM_BENCH");
const ORT_SHAPES = ["0.6b qkv", "8b o", "8b down"];
// larger tiles the engine does not use, timed to see whether they would pay (coalesced loads, as the engine's)
const EXTRA_TILES: GemmTile[] = [
  LARGE_GEMM_TILES.k32,
  { bm: 64, bn: 128, bk: 16, tm: 4, tn: 8, coalesced: true },
  LARGE_GEMM_TILES.n256,
];
const EXTRA_SWIGLU: GemmTile[] = [
  { bm: 128, bn: 128, bk: 16, tm: 8, tn: 8, coalesced: true },
  { bm: 64, bn: 128, bk: 16, tm: 4, tn: 8, coalesced: true },
];
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
// GPU timestamps give each kernel's own time: a submit-and-wait round trip costs ~12 ms in Deno, more than
// many of these products take, so the wall times below bound the GPU time from above only
const stamps = adapter.features.has("timestamp-query");
// with shader-f16, the default tiles also run with f16 arithmetic (k-slice sums in f16, see GemmArith)
const f16 = adapter.features.has("shader-f16") && only !== "ort";
const gpu = await adapter.requestDevice({
  requiredFeatures: [...(stamps ? ["timestamp-query"] : []), ...(f16 ? ["shader-f16"] : [])],
  requiredLimits: {
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxBufferSize: adapter.limits.maxBufferSize,
    maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
  },
});
// fixed iteration counts keep the whole file within a GPU session's few minutes
const runs = { n: 20, warmup: 3 };
const querySet = stamps ? gpu.createQuerySet({ type: "timestamp", count: 2 }) : undefined;
const resolved = gpu.createBuffer({ size: 16, usage: 0x200 | 0x4 });
const readback = gpu.createBuffer({ size: 16, usage: 0x1 | 0x8 });
// per bench: GFLOP and the GPU milliseconds of each run, rewritten after every run to MRM_GEMM_GPU_TIMES
const gpuTimes: Record<string, { gflop: number; ms: number[] }> = {};
const timesFile = Deno.env.get("MRM_GEMM_GPU_TIMES");
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
    const defaults = fused ? SWIGLU_TILES : GEMM_TILES;
    const tiles: { t: GemmTile; arith: GemmArith }[] = only === "ort" ? [] : [
      ...[...defaults, ...(hardware ? (fused ? EXTRA_SWIGLU : EXTRA_TILES) : [])].map((t) => ({
        t,
        arith: "f32" as GemmArith,
      })),
      // the engine's f16 tiles (32-deep slices, 128-thread tiles for large products)
      ...(f16 ? F16_TILES[fused ? "swiglu" : "plain"].map((t) => ({ t, arith: "f16" as GemmArith })) : []),
      // on a hardware adapter, the first tile with the first kernels' strided loads, and double-buffered
      ...(hardware ? [...strided(defaults.slice(0, 1)), ...doubleBuffered(defaults.slice(0, 1))] : []).map((t) => ({
        t,
        arith: "f32" as GemmArith,
      })),
    ];
    for (const { t, arith } of tiles) {
      const label = `wgsl ${arith === "f16" ? "f16 " : ""}${tileName(t)}`;
      const module = gpu.createShaderModule({ code: gemmShader("BF16", fused ? "swiglu" : "plain", t, arith) });
      const pipeline = gpu.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
      const group_ = gpu.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [U, X, W, Y, ...(fused ? [W] : [])].map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
      Deno.bench({
        name: label,
        group,
        baseline: t === defaults.at(-1) && arith === "f32",
        ...runs,
        async fn() {
          const enc = gpu.createCommandEncoder();
          const pass = enc.beginComputePass(
            querySet ? { timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : {},
          );
          pass.setPipeline(pipeline);
          pass.setBindGroup(0, group_);
          pass.dispatchWorkgroups(Math.ceil(N / t.bn), Math.ceil(M / t.bm));
          pass.end();
          if (querySet) {
            enc.resolveQuerySet(querySet, 0, 2, resolved, 0);
            enc.copyBufferToBuffer(resolved, 0, readback, 0, 16);
          }
          gpu.queue.submit([enc.finish()]);
          await gpu.queue.onSubmittedWorkDone();
          if (querySet) {
            await readback.mapAsync(1);
            const [a, b] = new BigUint64Array(readback.getMappedRange().slice(0));
            readback.unmap();
            (gpuTimes[`${group} | ${label}`] ??= { gflop: flops / 1e9, ms: [] }).ms.push(
              Number(b - a) / 1e6,
            );
            if (timesFile) Deno.writeTextFileSync(timesFile, JSON.stringify(gpuTimes));
          }
        },
      });
    }
    // onnxruntime-web's f16 MatMul needs shader-f16; its sessions are slow to create, so three shapes at the larger M
    if (fused || !hardware?.f16 || only === "wgsl" || M !== TOKENS.at(-1) || !ORT_SHAPES.includes(name)) continue;
    console.error(`onnxruntime-web session for ${group}: ${new Date().toISOString()}`);
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
    console.error(`session ${session ? "created" : "failed"}: ${new Date().toISOString()}`);
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
