/** The other WGSL kernels (weight loaders, attention) and the GEMM tile rules, on the software WebGPU adapter. */
import assert from "node:assert/strict";
import {
  attentionBytes,
  attentionRows,
  attentionShader,
  doubleBuffered,
  GEMM_TILE,
  GEMM_TILES,
  gemmWorkgroupBytes,
  LARGE_GEMM_TILES,
  pickTile,
  strided,
  SWIGLU_TILES,
  tilesWithin,
  type WeightDtype,
  weightLoader,
} from "../../lib/encoder/webgpu/shaders.ts";
import { f16ToF32, f32ToF16 } from "../../lib/store/safetensors.ts";
import { randomArray } from "../helpers.ts";
import { device, runKernel, upload } from "./_wgsl.ts";

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
  // 128 x 128 x 16 f32 with the first kernels' loads: 16 KiB single, 32 KiB double-buffered
  const [first] = strided(GEMM_TILES);
  assert.equal(gemmWorkgroupBytes(first, "plain"), 16384);
  assert.equal(gemmWorkgroupBytes(doubleBuffered([first])[0], "plain"), 32768);
  // coalesced loads pad each k-row of a tile by one vec4: 16 x (132 + 132) x 4 bytes
  assert.equal(gemmWorkgroupBytes(GEMM_TILES[0], "plain"), 16 * 264 * 4);
  assert.equal(gemmWorkgroupBytes(db[0], "plain"), 2 * 16 * 264 * 4);
  assert.equal(gemmWorkgroupBytes(SWIGLU_TILES[0], "swiglu"), 16 * (132 + 2 * 68) * 4);
  // WebGPU's default limit (16 KiB): of the padded f32 tiles 128 x 128 no longer fits (without the
  // padding it would); in f16 (half the bytes) all single-buffered ones and all but 128 x 128 double-buffered
  assert.deepEqual(tilesWithin(GEMM_TILES, "plain", "f32", 16384), GEMM_TILES.slice(1));
  assert.deepEqual(tilesWithin(strided(GEMM_TILES), "plain", "f32", 16384), strided(GEMM_TILES));
  assert.deepEqual(tilesWithin(GEMM_TILES, "plain", "f16", 16384), GEMM_TILES);
  assert.deepEqual(tilesWithin(db, "plain", "f16", 16384), db.slice(1));
  assert.deepEqual(tilesWithin(db, "plain", "f32", 49152), db);
  // nothing fits: the small single-buffered tile
  assert.deepEqual(tilesWithin([LARGE_GEMM_TILES.n256], "plain", "f32", 16384), [GEMM_TILE]);
});
