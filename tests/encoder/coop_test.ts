/**
 * The cooperative-matrix GEMM generator (lib/encoder/webgpu/coop.ts) without a GPU: no
 * adapter here (and no Deno yet) grants cooperative matrices, so what can be checked is
 * the tile arithmetic and the kernel's shape; bench/gemm_gpu_check.ts checks the kernels
 * against float64 where the feature is granted.
 */
import assert from "node:assert/strict";
import {
  checkCoopTile,
  COOP_SWIGLU_TILES,
  COOP_TILES,
  coopGemmShader,
  coopTilesWithin,
  coopWorkgroupBytes,
  SUBGROUP,
} from "../../lib/encoder/webgpu/coop.ts";

Deno.test("cooperative tiles: valid shapes, workgroup memory within a 48 KiB device, bad shapes refused", () => {
  for (const t of COOP_TILES) checkCoopTile(t);
  for (const t of COOP_SWIGLU_TILES) checkCoopTile(t);
  // f16 tiles (BK + 8 per row) plus an f32 scratch of 256 values per subgroup (512 for SwiGLU)
  assert.equal(coopWorkgroupBytes({ bm: 128, bn: 128, bk: 32, wm: 2, wn: 4 }, "plain"), 256 * 40 * 2 + 8 * 256 * 4);
  assert.equal(
    coopWorkgroupBytes({ bm: 128, bn: 64, bk: 32, wm: 4, wn: 2 }, "swiglu"),
    (128 + 2 * 64) * 40 * 2 + 8 * 512 * 4,
  );
  assert.deepEqual(coopTilesWithin(COOP_TILES, "plain", 49152), COOP_TILES);
  assert.deepEqual(coopTilesWithin(COOP_SWIGLU_TILES, "swiglu", 16384), []);
  // a subgroup's share must be whole 16 x 16 fragments, and a slice must split over the threads
  assert.throws(() => checkCoopTile({ bm: 128, bn: 128, bk: 32, wm: 3, wn: 4 }), /multiples of 16/);
  assert.throws(() => checkCoopTile({ bm: 128, bn: 128, bk: 24, wm: 2, wn: 4 }), /multiples of 16/);
  assert.throws(() => checkCoopTile({ bm: 16, bn: 64, bk: 16, wm: 1, wn: 4 }), /split evenly/);
});

Deno.test("cooperative GEMM kernel: one subgroup per 32 threads, every fragment multiplied and written once", () => {
  const t = COOP_TILES[0], warps = t.wm * t.wn, frags = (t.bm / t.wm / 16) * (t.bn / t.wn / 16);
  const code = coopGemmShader("BF16", "plain", t);
  assert.match(code, new RegExp(`@workgroup_size\\(${warps * SUBGROUP}\\)`));
  assert.ok(code.startsWith("enable f16;\nenable wgpu_cooperative_matrix;"));
  // per 16-deep step, each of the subgroup's fragments gets one multiply-add
  const mads = code.match(/coopMultiplyAdd/g)?.length;
  assert.equal(mads, frags * (t.bk / 16));
  assert.equal(code.match(/coopStoreT\(/g)?.length, frags);
  // SwiGLU: two accumulators per fragment, the activation applied in the epilogue
  const s = COOP_SWIGLU_TILES[0];
  const sw = coopGemmShader("F16", "swiglu", s);
  const sfrags = (s.bm / s.wm / 16) * (s.bn / s.wn / 16);
  assert.equal(sw.match(/coopMultiplyAdd/g)?.length, 2 * sfrags * (s.bk / 16));
  assert.match(sw, /exp\(-v\)/);
  assert.ok(!/undefined|NaN/.test(code + sw));
});
