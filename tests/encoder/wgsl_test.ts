/**
 * Our WGSL forward pass against transformers (the same fixtures as hf_test.ts), on the
 * software WebGPU adapter. The shaders widen bf16/f16 weights with core WGSL, so what
 * runs here is what runs on a GPU; only the GEMM tile may differ there (the engine times
 * candidates and keeps only those that reproduce this default tile's products).
 */
import assert from "node:assert/strict";
import { WebGpuEngine } from "../../lib/encoder/webgpu/engine.ts";
import {
  attentionBytes,
  attentionRows,
  attentionShader,
  doubleBuffered,
  GEMM_TILE,
  GEMM_TILES,
  type GemmArith,
  gemmShader,
  type GemmTile,
  gemmWorkgroupBytes,
  LARGE_GEMM_TILES,
  pickTile,
  SWIGLU_TILES,
  tileName,
  tilesWithin,
  type WeightDtype,
  weightLoader,
} from "../../lib/encoder/webgpu/shaders.ts";
import { f16ToF32, f32ToF16 } from "../../lib/store/safetensors.ts";
import { RewardEncoder } from "../../lib/encoder/encoder.ts";
import { hiddenErrors, randomArray, tempDir } from "../helpers.ts";

const FIX = new URL("../fixtures/hf/", import.meta.url).pathname;
const expected = JSON.parse(await Deno.readTextFile(`${FIX}expected.json`));
type Ref = { hidden: number[]; score: number };

const errors = hiddenErrors;

// deno-lint-ignore no-explicit-any
type Gpu = any;

/** A device on the first adapter, with the adapter's workgroup-memory limit. */
async function device(): Promise<Gpu> {
  // deno-lint-ignore no-explicit-any
  const adapter: any = await (navigator as any).gpu.requestAdapter();
  return await adapter.requestDevice({
    requiredLimits: { maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize },
  });
}

/** A GPU buffer holding `data` (storage, copy in and out, unless `usage` says otherwise). */
function upload(gpu: Gpu, data: ArrayBufferView, usage = 0x80 | 0x8 | 0x4): Gpu {
  const b = gpu.createBuffer({ size: Math.max(16, data.byteLength), usage });
  gpu.queue.writeBuffer(b, 0, data);
  return b;
}

/** Runs one compute shader with `buffers` bound in order; returns the first `bytes` of `out` as floats. */
async function runKernel(
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

for (const model of ["tiny-llama", "tiny-qwen3"]) {
  Deno.test(`WGSL engine, ${model} (bf16 in GPU buffers): padded batch and batch 1 match transformers`, async () => {
    const engine = await WebGpuEngine.load(`${FIX}${model}`, { tile: GEMM_TILE });
    try {
      const m = expected.models[model];
      const H = engine.spec.hidden;
      const all = await engine.run(m.sequences);
      const e = errors(all.rows, all.logits!, m.float64, H);
      assert.ok(e.hidden < 1e-4 && e.score < 1e-4, `padded: ${JSON.stringify(e)}`);
      // one at a time, the two shortest (a one-token sequence included)
      for (const i of [0, 1]) {
        const one = await engine.run([m.sequences[i]]);
        const e1 = errors(one.rows, one.logits!, [m.float64[i]], H);
        assert.ok(e1.hidden < 1e-4 && e1.score < 1e-4, `sequence ${i}: ${JSON.stringify(e1)}`);
      }
    } finally {
      await engine.dispose();
    }
  });
}

Deno.test("f16 GEMM arithmetic asks for shader-f16: refused, naming it, on an adapter without it", async () => {
  const adapter = await navigator.gpu.requestAdapter();
  if (adapter?.features.has("shader-f16")) return; // a GPU that has it runs it (bench/hf_gpu_check.ts, wgsl+f16)
  await assert.rejects(
    () => WebGpuEngine.load(`${FIX}tiny-qwen3`, { gemmArith: "f16" }),
    /tiny-qwen3: f16 GEMM arithmetic needs an adapter with shader-f16, which this one lacks/,
  );
});

Deno.test("weight loaders widen bf16, f16 and f32 exactly (as the GEMM, norm and rope kernels load them)", async () => {
  const gpu = await device();
  const values = Float32Array.from({ length: 64 }, (_, i) => (i - 31.5) * 0.37 * (i % 3 ? 1 : 1e-3));
  const bf16 = Uint16Array.from(new Uint32Array(values.buffer), (u) => u >>> 16);
  const f16 = new Uint16Array(64);
  f32ToF16(values, f16);
  const want: Record<WeightDtype, Float32Array> = {
    BF16: new Float32Array(Uint32Array.from(bf16, (h) => h << 16).buffer),
    F16: (() => {
      const o = new Float32Array(64);
      f16ToF32(f16, o);
      return o;
    })(),
    F32: values,
  };
  const raw: Record<WeightDtype, ArrayBufferView> = { BF16: bf16, F16: f16, F32: values };
  for (const dtype of ["BF16", "F16", "F32"] as WeightDtype[]) {
    const code = `
@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read_write> O: array<f32>;
${weightLoader("W", dtype)}
@compute @workgroup_size(16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  let v = W_4(lid.x * 4u);
  for (var j = 0u; j < 4u; j = j + 1u) { O[lid.x * 4u + j] = v[j]; O[64u + lid.x * 4u + j] = W_1(lid.x * 4u + j); }
}`;
    const O = gpu.createBuffer({ size: 128 * 4, usage: 0x80 | 0x4 });
    const out = await runKernel(gpu, code, [upload(gpu, raw[dtype]), O], [1], O, 512);
    assert.deepEqual(out.slice(0, 64), want[dtype], `${dtype} four at a time`);
    assert.deepEqual(out.slice(64), want[dtype], `${dtype} one at a time`);
  }
  gpu.destroy();
});

Deno.test("every GEMM tile, weight format and kind (=, +=, SwiGLU) matches a float64 product, ragged M and N", async () => {
  const gpu = await device();
  // K a multiple of every tile's k-slice (the shader needs that; real hidden sizes are multiples of 128)
  const M = 135, N = 196, K = 64;
  const x = Float32Array.from(randomArray(M * K, 1));
  // weights exactly representable in bf16 and f16, so every format holds the same values
  const w = Float32Array.from(randomArray(2 * N * K, 2), (v) => Math.round(v * 64) / 64);
  const y0 = Float32Array.from(randomArray(M * N, 3));
  const bf16 = Uint16Array.from(new Uint32Array(w.buffer), (u) => u >>> 16);
  const f16 = new Uint16Array(w.length);
  f32ToF16(w, f16);
  const raw: Record<WeightDtype, Uint16Array | Float32Array> = { BF16: bf16, F16: f16, F32: w };
  const dot = (m: number, n: number, off: number) => {
    let a = 0;
    for (let k = 0; k < K; k++) a += x[m * K + k] * w[off + n * K + k];
    return a;
  };
  const buf = (data: ArrayBufferView, usage?: number) => upload(gpu, data, usage);
  // the larger tiles only kept for GPU timings take minutes to compile on a software
  // adapter: checked with MRM_LARGE_TILES=1 (and end to end by bench/hf_gpu_check.ts)
  const large = Deno.env.get("MRM_LARGE_TILES") ? Object.values(LARGE_GEMM_TILES) : [];
  const tiles = [...new Set([...GEMM_TILES, ...SWIGLU_TILES, ...large])];
  for (const dtype of ["BF16", "F16", "F32"] as WeightDtype[]) {
    const half = raw[dtype].length / 2, size = raw[dtype].BYTES_PER_ELEMENT;
    const W = buf(raw[dtype].subarray(0, half)), U = buf(raw[dtype].subarray(half));
    // every tile on bf16 (the checkpoints' format); the loaders of f16 and f32 on the small
    // tile; the f16-arithmetic kernel's structure (k-slice sums, in f32 here: this adapter
    // has no shader-f16) on bf16 and the small tile (the larger ones take minutes to compile
    // on a software adapter; MRM_LARGE_TILES=1 adds them)
    const runs = [
      ...(dtype === "BF16" ? tiles : [GEMM_TILE]).map((t) => ({ t, arith: "f32" as GemmArith })),
      ...(dtype === "BF16" ? (large.length ? [...GEMM_TILES, ...SWIGLU_TILES] : [GEMM_TILE]) : []).map((t) => ({
        t,
        arith: "f16-structure" as GemmArith,
      })),
      // the double-buffered kernels (one barrier per k-slice), f32 and the f16 structure, on the
      // small tile: like the large tiles, kept for GPU timings and slow to compile on a software
      // adapter (38 and 82 s without a shader cache), so only with MRM_LARGE_TILES=1
      ...(dtype === "BF16" && large.length ? doubleBuffered([GEMM_TILE]) : []).flatMap((t) =>
        (["f32", "f16-structure"] as GemmArith[]).map((arith) => ({ t, arith }))
      ),
    ];
    // a tile's shape, whatever its stages
    const shape = (t: GemmTile) => tileName({ ...t, stages: 1 });
    const among = (t: GemmTile, list: GemmTile[]) => list.some((u) => shape(u) === shape(t));
    for (const { t, arith } of runs) {
      for (const kind of ["plain", "accumulate", "swiglu"] as const) {
        if (kind === "swiglu" && !among(t, SWIGLU_TILES)) continue;
        if (kind !== "swiglu" && arith !== "f32" && !among(t, GEMM_TILES)) continue;
        const code = gemmShader(dtype, kind === "swiglu" ? "swiglu" : "plain", t, arith);
        const Y = buf(y0), uni = buf(new Uint32Array([M, N, K, kind === "accumulate" ? 1 : 0]), 0x40 | 0x8);
        const bound = [uni, buf(x), W, Y, ...(kind === "swiglu" ? [U] : [])];
        const out = await runKernel(gpu, code, bound, [Math.ceil(N / t.bn), Math.ceil(M / t.bm)], Y, y0.byteLength);
        let err = 0;
        for (let m = 0; m < M; m++) {
          for (let n = 0; n < N; n++) {
            const g = dot(m, n, 0);
            const want = kind === "swiglu"
              ? g / (1 + Math.exp(-g)) * dot(m, n, N * K)
              : (kind === "accumulate" ? y0[m * N + n] : 0) + g;
            err = Math.max(err, Math.abs(out[m * N + n] - want));
          }
        }
        assert.ok(err < 1e-4, `${dtype} ${tileName(t)} ${kind} ${arith} (${size}-byte weights): max error ${err}`);
      }
    }
  }
  gpu.destroy();
});

// head sizes 16 and 32 (one output vec4 per thread); 64 and 128 are checked against transformers on the GPU
// machine (bench/hf_gpu_check.sh): the software adapter takes minutes to compile those variants
Deno.test("attention kernel, head sizes 16 and 32: causal GQA over padded sequences matches float64", async () => {
  const gpu = await device();
  const limit = gpu.limits.maxComputeWorkgroupStorageSize;
  const T = 75, H = 4, KV = 2, lens = [75, 33];
  const B = lens.length;
  for (const hd of [16, 32]) {
    for (const bk of [8, 16]) {
      if (attentionBytes(hd, bk) > limit) continue;
      const q = randomArray(B * H * T * hd, hd), k = randomArray(B * KV * T * hd, hd + 1);
      const v = randomArray(B * KV * T * hd, hd + 2), scale = 1 / Math.sqrt(hd);
      const buf = (data: ArrayBufferView, usage?: number) => upload(gpu, data, usage);
      const uniform = new ArrayBuffer(16);
      new Uint32Array(uniform).set([T, H, KV]);
      new Float32Array(uniform)[3] = scale;
      const O = buf(new Float32Array(B * T * H * hd).fill(NaN));
      const bound = [buf(new Uint8Array(uniform), 0x40 | 0x8), buf(q), buf(k), buf(v), buf(Uint32Array.from(lens)), O];
      const grid: [number, number, number] = [Math.ceil(T / attentionRows(hd)), H, B];
      const out = await runKernel(gpu, attentionShader(hd, bk), bound, grid, O, B * T * H * hd * 4);
      let err = 0;
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < H; h++) {
          const kv = Math.floor(h / (H / KV));
          for (let t = 0; t < T; t++) {
            const want = new Float64Array(hd);
            if (t < lens[b]) {
              const s = [];
              for (let j = 0; j <= t; j++) {
                let d = 0;
                for (let i = 0; i < hd; i++) {
                  d += q[((b * H + h) * T + t) * hd + i] * k[((b * KV + kv) * T + j) * hd + i];
                }
                s.push(d * scale);
              }
              const mx = Math.max(...s), e = s.map((x) => Math.exp(x - mx)), z = e.reduce((a, x) => a + x, 0);
              e.forEach((p, j) => {
                for (let i = 0; i < hd; i++) want[i] += (p / z) * v[((b * KV + kv) * T + j) * hd + i];
              });
            }
            for (let i = 0; i < hd; i++) err = Math.max(err, Math.abs(out[((b * T + t) * H + h) * hd + i] - want[i]));
          }
        }
      }
      assert.ok(err < 1e-5, `hd ${hd}, ${bk} keys per tile: max error ${err}`);
    }
  }
  gpu.destroy();
});

Deno.test("the tile rule: large tiles for large products, the smallest when nothing fills the GPU", () => {
  assert.equal(pickTile(4096, 4096, GEMM_TILES, 256), GEMM_TILES[0]);
  assert.equal(pickTile(300, 1024, GEMM_TILES, 256), GEMM_TILE);
  assert.equal(pickTile(1024, 2048, GEMM_TILES, 256), GEMM_TILES[1]);
  assert.equal(pickTile(1024, 2048, [GEMM_TILE], 256), GEMM_TILE);
});

Deno.test("tiles needing more workgroup memory than the device gives are left out", () => {
  const db = doubleBuffered(GEMM_TILES);
  // 128 x 128 x 16 f32: 16 KiB single, 32 KiB double-buffered (16 KiB in f16)
  assert.equal(gemmWorkgroupBytes(GEMM_TILES[0], "plain"), 16384);
  assert.equal(gemmWorkgroupBytes(db[0], "plain"), 32768);
  assert.equal(gemmWorkgroupBytes(SWIGLU_TILES[0], "swiglu"), 16384);
  // WebGPU's default limit (16 KiB): the single-buffered tiles all fit, the double-buffered 128-row ones do not
  assert.deepEqual(tilesWithin(GEMM_TILES, "plain", "f32", 16384), GEMM_TILES);
  assert.deepEqual(tilesWithin(db, "plain", "f32", 16384).map(tileName), ["64x64x16/4x4/db"]);
  assert.deepEqual(tilesWithin(db, "plain", "f16", 16384), db);
  assert.deepEqual(tilesWithin(db, "plain", "f32", 32768), db);
  // nothing fits: the small single-buffered tile
  assert.deepEqual(tilesWithin([LARGE_GEMM_TILES.n256], "plain", "f32", 16384), [GEMM_TILE]);
});

Deno.test("encoder picks the WGSL engine on webgpu for a Hugging Face folder; agrees with the ONNX engine on wasm", async () => {
  await using t = await tempDir();
  const dir = `${t.dir}/m`;
  await Deno.mkdir(dir);
  for (const e of Deno.readDirSync(`${FIX}tiny-qwen3`)) {
    await Deno.copyFile(`${FIX}tiny-qwen3/${e.name}`, `${dir}/${e.name}`);
  }
  const { writeTinyModel } = await import("../fixtures/tiny_model.ts");
  await writeTinyModel(`${t.dir}/tok`);
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) await Deno.copyFile(`${t.dir}/tok/${f}`, `${dir}/${f}`);
  const convs = [
    [{ role: "user" as const, content: "Summarize: the cat sat on the mat." }, {
      role: "assistant" as const,
      content: "A cat sat.",
    }],
    [{ role: "user" as const, content: "hi" }, { role: "assistant" as const, content: "hello there" }],
  ];
  const gpu = await RewardEncoder.load(dir, { device: "webgpu" });
  const cpu = await RewardEncoder.load(dir, { device: "wasm" });
  try {
    assert.equal(gpu.engine.constructor.name, "WebGpuEngine");
    assert.equal(cpu.engine.constructor.name, "HfEngine");
    const [a, b] = [await gpu.encode(convs), await cpu.encode(convs)];
    let d = 0;
    a.embeddings.forEach((v, i) => (d = Math.max(d, Math.abs(v - b.embeddings[i]))));
    assert.ok(d < 1e-4, `max difference ${d}`);
    assert.ok(a.scoreCheck && a.scoreCheck.mismatches === 0);
  } finally {
    await gpu.dispose();
    await cpu.dispose();
  }
  // --precision f16 reaches the WGSL engine as f16 GEMM arithmetic: refused, naming the
  // feature, where the adapter lacks shader-f16; where it has it, the GEMMs run in f16
  const adapter = await navigator.gpu.requestAdapter();
  if (adapter?.features.has("shader-f16")) {
    const f16 = await RewardEncoder.load(dir, { device: "webgpu", precision: "f16" });
    try {
      assert.equal((f16.engine as WebGpuEngine).gemmArith, "f16");
    } finally {
      await f16.dispose();
    }
  } else {
    await assert.rejects(RewardEncoder.load(dir, { device: "webgpu", precision: "f16" }), /needs .*shader-f16/);
  }
  // other precisions keep f32 arithmetic there
  const f32 = await RewardEncoder.load(dir, { device: "webgpu", precision: "f16-weights" });
  try {
    assert.equal((f32.engine as WebGpuEngine).gemmArith, "f32");
  } finally {
    await f32.dispose();
  }
});
