/**
 * GPU check of the GEMM kernels alone, on the GPU machine (bench/hf_gpu_check.sh with
 * GEMM_CHECK=1, or `deno run -A bench/gemm_gpu_check.ts --out gemm.json` after
 * bench/gpu_setup.sh). In one process:
 *
 * 1. the adapter's features, and whether Deno's WebGPU grants `wgpu-cooperative-matrix`
 *    (tensor cores, lib/encoder/webgpu/coop.ts); where it does, a probe of the fragment
 *    layouts (which of naga's coopLoad/coopLoadT reads row-major) and the cooperative tiles;
 * 2. the scalar WGSL GEMM's variants the engine can use (f32 or f16 arithmetic; loads as
 *    today or coalesced; single or double buffered), each checked against a float64
 *    product (M not a multiple of the tile; `accumulate` on);
 * 3. kernel times: GPU timestamps around `--reps` back-to-back dispatches after a warm-up
 *    (steady clocks, no idle gaps), for the projection shapes of
 *    Skywork-Reward-V2-Llama-3.1-8B and -Qwen3-0.6B at 1,080 (one long sequence) and
 *    2,048 rows, every variant in the same process.
 *
 * `--dry` runs it on any adapter with small shapes (CI's software adapter: the script
 * itself, not speed).
 */
import { parseArgs } from "node:util";
import {
  COOP_FEATURE,
  COOP_SWIGLU_TILES,
  COOP_TILES,
  coopGemmShader,
  type CoopLayout,
  coopTileName,
  coopWorkgroupBytes,
  NAGA_LAYOUT,
} from "../lib/encoder/webgpu/coop.ts";
import {
  doubleBuffered,
  F16_TILES,
  GEMM_TILES,
  type GemmArith,
  gemmShader,
  type GemmTile,
  gemmWorkgroupBytes,
  LARGE_GEMM_TILES,
  strided,
  SWIGLU_TILES,
  tileName,
} from "../lib/encoder/webgpu/shaders.ts";

const { values } = parseArgs({
  options: {
    out: { type: "string", default: "gemm.json" },
    reps: { type: "string", default: "10" },
    /**
     * which scalar variants: "loads" (the first kernels, coalesced loads, double buffering,
     * 32-deep slices, 128 x 256; f32 and f16) or "f16" (f16 arithmetic's tile candidates:
     * slice depth, 128-thread tiles)
     */
    set: { type: "string", default: "f16" },
    /** shapes: "8b" or "all" (8B and 0.6B) */
    shapes: { type: "string", default: "all" },
    /** small shapes and variants, for any adapter: exercises the script itself */
    dry: { type: "boolean", default: false },
  },
});
// deno-lint-ignore no-explicit-any
type Gpu = any;
const result: Record<string, unknown> = {};
const save = () => Deno.writeTextFileSync(values.out!, JSON.stringify(result, null, 1));
const adapter: Gpu = await (navigator as Gpu).gpu?.requestAdapter({ powerPreference: "high-performance" });
if (!adapter) {
  result.adapter = null;
  save();
  console.log("no WebGPU adapter");
  Deno.exit(0);
}
result.adapter = {
  description: adapter.info?.description,
  features: [...adapter.features].sort(),
  subgroupSizes: [adapter.info?.subgroupMinSize, adapter.info?.subgroupMaxSize],
  maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
  maxComputeInvocationsPerWorkgroup: adapter.limits.maxComputeInvocationsPerWorkgroup,
};
console.log("adapter:", JSON.stringify(result.adapter));
const dry = values.dry!;
const base = ["shader-f16", "timestamp-query"].filter((f) => adapter.features.has(f));
const limits = {
  maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
  maxBufferSize: adapter.limits.maxBufferSize,
  maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
  maxComputeInvocationsPerWorkgroup: adapter.limits.maxComputeInvocationsPerWorkgroup,
};
// Deno lists only WebGPU's standard features in adapter.features; wgpu's native ones
// (wgpu-cooperative-matrix) may still be granted, so ask, and fall back without it
// whether Deno grants `subgroups` (not listed either), for the record
try {
  (await adapter.requestDevice({ requiredFeatures: ["subgroups"] })).destroy();
  result.subgroups = "granted";
} catch (e) {
  result.subgroups = `refused: ${e}`;
}
let gpu: Gpu, coop = false;
try {
  gpu = await adapter.requestDevice({ requiredFeatures: [...base, COOP_FEATURE], requiredLimits: limits });
  coop = true;
  result.cooperativeMatrix = "granted";
} catch (e) {
  result.cooperativeMatrix = `refused: ${e}`;
  console.log(`no cooperative matrices: ${e}`);
  gpu = await adapter.requestDevice({ requiredFeatures: base, requiredLimits: limits });
}
const f16 = gpu.features.has("shader-f16");
result.deviceFeatures = [...gpu.features].sort();
console.log("device features:", result.deviceFeatures);
gpu.lost.then((info: Gpu) => console.log("device lost:", info.message));
gpu.onuncapturederror = (e: Gpu) => console.log("uncaptured GPU error:", e.error?.message);

const STORAGE = 0x80, COPY_DST = 0x8, COPY_SRC = 0x4, MAP_READ = 0x1, UNIFORM = 0x40;
function buffer(data: ArrayBufferView | number, usage = STORAGE | COPY_DST | COPY_SRC): Gpu {
  const size = typeof data === "number" ? data : data.byteLength;
  const b = gpu.createBuffer({ size: Math.max(16, Math.ceil(size / 4) * 4), usage });
  if (typeof data !== "number") gpu.queue.writeBuffer(b, 0, data);
  return b;
}
/** A pipeline, or the compiler's and validator's messages. */
async function compile(code: string): Promise<{ pipeline?: Gpu; errors?: string }> {
  gpu.pushErrorScope("validation");
  const module = gpu.createShaderModule({ code });
  const info = await module.getCompilationInfo();
  const pipeline = gpu.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
  const err = await gpu.popErrorScope();
  const msgs = info.messages.filter((m: Gpu) => m.type === "error").map((m: Gpu) => `${m.lineNum}: ${m.message}`);
  if (err || msgs.length) return { errors: [...msgs, err?.message ?? ""].join("\n").slice(0, 3000) };
  return { pipeline };
}
async function read(b: Gpu, bytes: number): Promise<Float32Array> {
  const r = gpu.createBuffer({ size: bytes, usage: MAP_READ | COPY_DST });
  const enc = gpu.createCommandEncoder();
  enc.copyBufferToBuffer(b, 0, r, 0, bytes);
  gpu.queue.submit([enc.finish()]);
  await r.mapAsync(1);
  const out = new Float32Array(r.getMappedRange().slice(0));
  r.unmap();
  r.destroy();
  return out;
}
function bind(pipeline: Gpu, buffers: Gpu[]): Gpu {
  return gpu.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: buffers.map((b, binding) => ({ binding, resource: { buffer: b } })),
  });
}
async function run(pipeline: Gpu, group: Gpu, grid: number[], reps = 1, stamps?: Gpu): Promise<number> {
  stamps = stamps && gpu.features.has("timestamp-query") ? stamps : undefined;
  const enc = gpu.createCommandEncoder();
  const pass = enc.beginComputePass(
    stamps ? { timestampWrites: { querySet: stamps.set, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : {},
  );
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, group);
  for (let i = 0; i < reps; i++) pass.dispatchWorkgroups(...grid);
  pass.end();
  if (stamps) {
    enc.resolveQuerySet(stamps.set, 0, 2, stamps.resolved, 0);
    enc.copyBufferToBuffer(stamps.resolved, 0, stamps.read, 0, 16);
  }
  gpu.queue.submit([enc.finish()]);
  await gpu.queue.onSubmittedWorkDone();
  if (!stamps) return 0;
  await stamps.read.mapAsync(1);
  const [a, b] = new BigUint64Array(stamps.read.getMappedRange().slice(0));
  stamps.read.unmap();
  return Number(b - a) / 1e6 / reps;
}
const stamps = !gpu.features.has("timestamp-query") ? undefined : {
  set: gpu.createQuerySet({ type: "timestamp", count: 2 }),
  resolved: gpu.createBuffer({ size: 16, usage: 0x200 | COPY_SRC }),
  read: gpu.createBuffer({ size: 16, usage: MAP_READ | COPY_DST }),
};
const f16bits = (v: number) => new Uint16Array(new Float16Array([v]).buffer)[0];
const rand = (n: number, seed: number) =>
  Float32Array.from({ length: n }, (_, i) => ((((i + seed) * 2654435761) >>> 0) % 2001) / 1000 - 1);

// 1. which load reads row-major (cooperative matrices only)
if (coop) {
  const a = rand(256, 1), b = rand(256, 2);
  const ref = new Float64Array(256);
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 16; j++) {
      let s = 0;
      for (let k = 0; k < 16; k++) s += Math.f16round(a[i * 16 + k]) * Math.f16round(b[k * 16 + j]);
      ref[i * 16 + j] = s;
    }
  }
  const probe: Record<string, unknown> = {};
  for (const [name, load, store] of [["T", "coopLoadT", "coopStoreT"], ["plain", "coopLoad", "coopStore"]]) {
    const code = `enable f16;
enable wgpu_cooperative_matrix;
@group(0) @binding(0) var<storage, read> A: array<f16>;
@group(0) @binding(1) var<storage, read> B: array<f16>;
@group(0) @binding(2) var<storage, read_write> O: array<f32>;
@group(0) @binding(3) var<storage, read> Z: array<f32>;
@compute @workgroup_size(32)
fn main() {
  var c = ${load}<coop_mat16x16<f32, C>>(&Z[0], 16u);
  let a = ${load}<coop_mat16x16<f16, A>>(&A[0], 16u);
  let b = ${load}<coop_mat16x16<f16, B>>(&B[0], 16u);
  c = coopMultiplyAdd(a, b, c);
  ${store}(c, &O[0], 16u);
}`;
    const { pipeline, errors } = await compile(code);
    if (!pipeline) {
      probe[name] = { errors };
      continue;
    }
    const O = buffer(1024);
    const bufs = [
      buffer(Uint16Array.from(a, f16bits)),
      buffer(Uint16Array.from(b, f16bits)),
      O,
      buffer(new Float32Array(256)),
    ];
    await run(pipeline, bind(pipeline, bufs), [1, 1, 1]);
    const o = await read(O, 1024);
    let rowMajor = 0, transposed = 0;
    for (let i = 0; i < 16; i++) {
      for (let j = 0; j < 16; j++) {
        rowMajor = Math.max(rowMajor, Math.abs(o[i * 16 + j] - ref[i * 16 + j]));
        transposed = Math.max(transposed, Math.abs(o[j * 16 + i] - ref[i * 16 + j]));
      }
    }
    // all-transposed loads and store give (A^T B^T)^T = B A read back, which matches neither
    probe[name] = { maxDiffRowMajor: rowMajor, maxDiffTransposed: transposed, first: Array.from(o.slice(0, 4)) };
  }
  result.probe = probe;
  console.log("probe:", JSON.stringify(probe));
  save();
}
const probe = (result.probe ?? {}) as Record<string, { maxDiffRowMajor?: number }>;
const layout: CoopLayout = (probe.plain?.maxDiffRowMajor ?? 1) < 1e-3 && !((probe.T?.maxDiffRowMajor ?? 1) < 1e-3)
  ? { rowMajor: "coopLoad", colMajor: "coopLoadT", storeRowMajor: "coopStore" }
  : NAGA_LAYOUT;
result.layout = layout;

// 2. the kernels: cooperative tiles (where granted) and the scalar variants, checked against float64
type Kernel = { name: string; kind: "plain" | "swiglu"; code: string; bm: number; bn: number; coop: boolean };
const kernels: Kernel[] = [];
const smem = gpu.limits.maxComputeWorkgroupStorageSize;
for (const kind of ["plain", "swiglu"] as const) {
  for (const t of coop ? (kind === "plain" ? COOP_TILES : COOP_SWIGLU_TILES) : []) {
    if (coopWorkgroupBytes(t, kind) > smem) continue;
    const code = coopGemmShader("BF16", kind, t, layout);
    kernels.push({ name: coopTileName(t), kind, code, bm: t.bm, bn: t.bn, coop: true });
  }
  const first = (kind === "plain" ? GEMM_TILES : SWIGLU_TILES)[0];
  const runs: { t: GemmTile; arith: GemmArith }[] = [];
  const both = (ts: GemmTile[]) => {
    for (const arith of (f16 ? ["f32", "f16"] : ["f32"]) as GemmArith[]) for (const t of ts) runs.push({ t, arith });
  };
  if (dry) both([first, ...strided([first])]);
  else if (values.set === "loads") {
    // the first kernels (strided loads), coalesced, double-buffered, 32-deep, and (plain) 128 x 256
    const s = strided([first])[0];
    both([s, first, ...doubleBuffered([first]), { ...first, bk: 32 }]);
    if (kind === "plain") both([strided([LARGE_GEMM_TILES.n256])[0], LARGE_GEMM_TILES.n256]);
  } else {
    // f16 arithmetic: the engine's f16 tile, 64-deep slices, and 128-thread tiles (8 x 8 outputs
    // each: half the registers per workgroup, so more workgroups fit a compute unit); f32 for reference
    runs.push({ t: first, arith: "f32" });
    const tile = (bm: number, bn: number, bk: number, tm: number, tn: number): GemmTile => ({
      bm,
      bn,
      bk,
      tm,
      tn,
      coalesced: true,
    });
    const f16Tiles = kind === "plain"
      ? [[128, 128, 8], [64, 128, 8], [128, 64, 8]].flatMap(([bm, bn, tn]) =>
        [32, 64].map((bk) => tile(bm, bn, bk, 8, tn))
      )
      : [[128, 64], [64, 64], [128, 32]].flatMap(([bm, bn]) => [32, 64].map((bk) => tile(bm, bn, bk, 8, 4)));
    for (const t of f16Tiles) runs.push({ t, arith: "f16" });
    // the engine's own (F16_TILES), where not among those
    for (const t of F16_TILES[kind]) {
      if (!f16Tiles.some((u) => tileName(u) === tileName(t))) runs.push({ t, arith: "f16" });
    }
  }
  for (const { t, arith } of runs) {
    if (gemmWorkgroupBytes(t, kind) * (arith === "f16" ? 0.5 : 1) > smem) continue;
    const code = gemmShader("BF16", kind, t, arith);
    kernels.push({ name: `${arith} ${tileName(t)}`, kind, code, bm: t.bm, bn: t.bn, coop: false });
  }
}
const compiled = new Map<string, Gpu>();
const checks: Record<string, unknown> = {};
{
  const M = 200, N = 320, K = 512;
  const x = rand(M * K, 3), w = rand(N * K, 4), u = rand(N * K, 5), y0 = rand(M * N, 6);
  const bf = (v: Float32Array) => {
    const out = new Uint16Array(v.length);
    new Uint32Array(v.buffer).forEach((b, i) => (out[i] = b >>> 16));
    return out;
  };
  const wb = bf(w), ub = bf(u);
  const wv = Float32Array.from(wb, (h) => new Float32Array(new Uint32Array([h << 16]).buffer)[0]);
  const uv = Float32Array.from(ub, (h) => new Float32Array(new Uint32Array([h << 16]).buffer)[0]);
  for (const k of kernels) {
    const { pipeline, errors } = await compile(k.code);
    if (!pipeline) {
      checks[`${k.kind} ${k.name}`] = { errors };
      console.log(`${k.kind} ${k.name}: does not compile\n${errors}`);
      continue;
    }
    compiled.set(`${k.kind} ${k.name}`, pipeline);
    const round = k.coop || k.name.startsWith("f16") ? Math.f16round : (v: number) => v;
    const Y = buffer(y0);
    const bufs = [
      buffer(new Uint32Array([M, N, K, k.kind === "plain" ? 1 : 0]), UNIFORM | COPY_DST),
      buffer(x),
      buffer(wb),
      Y,
      ...(k.kind === "swiglu" ? [buffer(ub)] : []),
    ];
    await run(pipeline, bind(pipeline, bufs), [Math.ceil(N / k.bn), Math.ceil(M / k.bm), 1]);
    const y = await read(Y, M * N * 4);
    let maxErr = 0, scale = 0;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let g = 0, v = 0;
        for (let kk = 0; kk < K; kk++) {
          const xv = round(x[m * K + kk]);
          g += xv * round(wv[n * K + kk]);
          if (k.kind === "swiglu") v += xv * round(uv[n * K + kk]);
        }
        const want = k.kind === "plain" ? y0[m * N + n] + g : g / (1 + Math.exp(-g)) * v;
        maxErr = Math.max(maxErr, Math.abs(y[m * N + n] - want));
        scale = Math.max(scale, Math.abs(want));
      }
    }
    // f16 arithmetic sums each k-slice in f16: judged against its own bound, not float64's
    const tol = k.name.startsWith("f16") ? 2e-3 : 1e-4;
    checks[`${k.kind} ${k.name}`] = { maxAbsErr: maxErr, scale, ok: maxErr <= tol * scale };
    console.log(`${k.kind} ${k.name}: max error ${maxErr.toExponential(2)} on values up to ${scale.toFixed(1)}`);
  }
  result.checks = checks;
  save();
}

// 3. kernel times on the model's shapes
const SHAPES: [string, number, number, "plain" | "swiglu"][] = dry
  ? [["small", 256, 256, "plain"], ["small gate+up", 256, 256, "swiglu"]]
  : [
    ["8b qkv", 6144, 4096, "plain"],
    ["8b o", 4096, 4096, "plain"],
    ["8b gate+up", 14336, 4096, "swiglu"],
    ["8b down", 4096, 14336, "plain"],
  ];
if (!dry && values.shapes === "all") {
  SHAPES.push(
    ["0.6b qkv", 4096, 1024, "plain"],
    ["0.6b o", 1024, 2048, "plain"],
    ["0.6b gate+up", 3072, 1024, "swiglu"],
    ["0.6b down", 1024, 3072, "plain"],
  );
}
const times: Record<string, unknown>[] = [];
result.times = times;
const reps = Number(values.reps);
let warm = false;
for (const [shape, N, K, kind] of SHAPES) {
  // bf16 weights of 1/64 (the values do not change the time)
  const W = buffer(new Uint16Array(N * K).fill(0x3c80));
  const U = kind === "swiglu" ? buffer(new Uint16Array(N * K).fill(0x3c80)) : undefined;
  for (const M of dry ? [64] : [1080, 4096]) {
    const X = buffer(rand(M * K, 7));
    const Y = buffer(M * N * 4);
    const uni = buffer(new Uint32Array([M, N, K, 0]), UNIFORM | COPY_DST);
    const flops = 2 * M * N * K * (kind === "swiglu" ? 2 : 1);
    for (const k of kernels.filter((k) => k.kind === kind)) {
      const pipeline = compiled.get(`${k.kind} ${k.name}`);
      if (!pipeline) continue;
      const group = bind(pipeline, [uni, X, W, Y, ...(U ? [U] : [])]);
      const grid = [Math.ceil(N / k.bn), Math.ceil(M / k.bm), 1];
      // the first kernel runs ~1 s first, so that the GPU's clocks are up before anything is timed
      if (!warm) { for (let i = 0; i < (dry ? 1 : 10); i++) await run(pipeline, group, grid, 20); }
      warm = true;
      await run(pipeline, group, grid, 2);
      const ms = await run(pipeline, group, grid, reps, stamps);
      const row = { shape, M, N, K, kernel: k.name, ms, tflops: flops / ms / 1e9 };
      times.push(row);
      console.log(`${shape} M=${M}: ${k.name} ${ms.toFixed(3)} ms ${row.tflops.toFixed(1)} TFLOP/s`);
    }
    save();
    X.destroy();
    Y.destroy();
  }
  W.destroy();
  U?.destroy();
}
save();
console.log("done");
