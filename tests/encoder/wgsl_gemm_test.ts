/** The WGSL GEMM kernels against a float64 product, on the software WebGPU adapter. */
import assert from "node:assert/strict";
import {
  doubleBuffered,
  F16_TILES,
  GEMM_TILE,
  GEMM_TILES,
  type GemmArith,
  gemmShader,
  type GemmTile,
  LARGE_GEMM_TILES,
  strided,
  SWIGLU_TILES,
  tileName,
  type WeightDtype,
} from "../../lib/encoder/webgpu/shaders.ts";
import { f32ToF16 } from "../../lib/store/safetensors.ts";
import { randomArray } from "../helpers.ts";
import { device, runKernel, upload } from "./_wgsl.ts";

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
      // the first kernels' strided loads (bench comparisons) on the small tile, f32 and the f16
      // structure; the f16 tiles' 32-deep slices on the small tile
      ...(dtype === "BF16" ? strided([GEMM_TILE]) : []).flatMap((t) =>
        (["f32", "f16-structure"] as GemmArith[]).map((arith) => ({ t, arith }))
      ),
      ...(dtype === "BF16" ? F16_TILES.plain.slice(-1) : []).map((t) => ({ t, arith: "f16-structure" as GemmArith })),
    ];
    // a tile's shape, whatever its stages
    const shape = (t: GemmTile) => tileName({ ...t, stages: 1, coalesced: false, bk: 16 });
    const among = (t: GemmTile, list: GemmTile[]) => list.some((u) => shape(u) === shape(t));
    for (const { t, arith } of runs) {
      for (const kind of ["plain", "accumulate", "swiglu"] as const) {
        if (kind === "swiglu" && !among(t, SWIGLU_TILES)) continue;
        // f16 and f32 weights: the plain kernel checks their loader (SwiGLU's second operand
        // goes through the same loader; each kernel costs 10-40 s to compile on a software adapter)
        if (kind === "swiglu" && dtype !== "BF16") continue;
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
