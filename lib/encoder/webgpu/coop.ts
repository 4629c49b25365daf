/**
 * GEMM kernels on cooperative matrices: wgpu's `wgpu-cooperative-matrix` feature
 * (Vulkan's VK_KHR_cooperative_matrix), 16 x 16 x 16 products of f16 operands with f32
 * accumulation, which on NVIDIA GPUs run on the tensor cores, out of the scalar GEMM's
 * reach (gemmShader).
 *
 * Status: NOT used by the engine, and never compiled. The H200's adapter has the feature
 * inside wgpu, but Deno 2.9.6 neither lists it in `adapter.features` nor grants it:
 * requestDevice answers "Some experimental features, EXPERIMENTAL_COOPERATIVE_MATRIX, were
 * requested, but experimental features are not enabled" (also with --unstable-webgpu),
 * because Deno does not enable wgpu's experimental features. `bench/gemm_gpu_check.ts`
 * asks for it on every run; once a Deno grants it, the same run probes the fragment
 * layouts, checks these kernels against a float64 product and times them.
 *
 * Same bindings and uniform as `gemmShader` (P = M, N, K, accumulate; X f32 [M,K]; W in
 * its checkpoint dtype [N,K]; Y f32 [M,N]; U for SwiGLU), so the engine swaps kernels
 * without changing anything else. Each k-slice of X and W is loaded into registers
 * (coalesced: consecutive threads read consecutive 16-byte pieces of a row), rounded to
 * f16 and stored in workgroup memory row by row with a padded stride; every subgroup
 * (32 threads on NVIDIA) then loads its 16 x 16 fragments from there and multiplies.
 * The results go out through a per-subgroup scratch in workgroup memory, so rows past M
 * and columns past N are never written, `accumulate` adds into Y, and SwiGLU is applied
 * in f32.
 *
 * Precision: X and the weights are rounded to f16 (bf16 weights convert exactly within
 * f16's range); products and sums are f32. Values beyond f16's range (65504) become
 * infinite, as in any fp16 inference.
 *
 * A software adapter has no cooperative matrices, so these kernels can only be checked
 * on a GPU.
 */
import { gemmBindings, type WeightDtype } from "./shaders.ts";

/** The device feature that enables cooperative matrices in Deno's WebGPU (wgpu). */
export const COOP_FEATURE = "wgpu-cooperative-matrix";

/**
 * A cooperative-matrix GEMM tile: BM x BN outputs per workgroup of WM x WN subgroups,
 * each subgroup (BM/WM) x (BN/WN) outputs in 16 x 16 fragments; BK-deep k-slices (a
 * multiple of 16).
 */
export interface CoopTile {
  bm: number;
  bn: number;
  bk: number;
  wm: number;
  wn: number;
}

/** Plain GEMM tiles, largest first. */
export const COOP_TILES: CoopTile[] = [
  { bm: 128, bn: 128, bk: 32, wm: 2, wn: 4 },
  { bm: 64, bn: 128, bk: 32, wm: 2, wn: 4 },
  { bm: 64, bn: 64, bk: 32, wm: 2, wn: 2 },
];

/** SwiGLU tiles (two products per output), largest first. */
export const COOP_SWIGLU_TILES: CoopTile[] = [
  { bm: 128, bn: 64, bk: 32, wm: 4, wn: 2 },
  { bm: 64, bn: 64, bk: 32, wm: 2, wn: 2 },
];

/** Threads per subgroup the kernels are written for (NVIDIA's warp). */
export const SUBGROUP = 32;

/** A short name of a tile, for logs and pipeline keys. */
export function coopTileName(t: CoopTile): string {
  return `coop ${t.bm}x${t.bn}x${t.bk}/${t.wm}x${t.wn}`;
}

/** Row stride (f16 elements) of the workgroup tiles: 8 more than BK, so rows start in different banks. */
function pitch(t: CoopTile): number {
  return t.bk + 8;
}

/** Bytes of workgroup memory a tile's kernel declares. */
export function coopWorkgroupBytes(t: CoopTile, kind: "plain" | "swiglu"): number {
  const two = kind === "swiglu";
  const tiles = (t.bm + (two ? 2 : 1) * t.bn) * pitch(t) * 2;
  const scratch = t.wm * t.wn * 256 * (two ? 2 : 1) * 4;
  return tiles + scratch;
}

/** The tiles whose kernels fit `limitBytes` of workgroup memory, in order (none when none does). */
export function coopTilesWithin(tiles: CoopTile[], kind: "plain" | "swiglu", limitBytes: number): CoopTile[] {
  return tiles.filter((t) => coopWorkgroupBytes(t, kind) <= limitBytes);
}

/** Checks a tile's shape; throws naming what is wrong. */
export function checkCoopTile(t: CoopTile): void {
  const wtm = t.bm / t.wm, wtn = t.bn / t.wn;
  if (t.bk % 16 || wtm % 16 || wtn % 16 || !Number.isInteger(wtm) || !Number.isInteger(wtn)) {
    throw new Error(
      `cooperative tile ${coopTileName(t)}: BK and each subgroup's rows and columns must be multiples of 16`,
    );
  }
  const threads = t.wm * t.wn * SUBGROUP;
  if (((t.bm * t.bk) / 4) % threads || ((t.bn * t.bk) / 4) % threads) {
    throw new Error(
      `cooperative tile ${coopTileName(t)}: the k-slice's quads must split evenly over ${threads} threads`,
    );
  }
}

/**
 * How fragments are read: `rowMajor` names the load that reads element (r, c) at
 * ptr[r * stride + c] (naga: coopLoadT; coopLoad reads column-major, like WGSL's own
 * matrices), `colMajor` the other, `storeRowMajor` the matching store.
 */
export interface CoopLayout {
  rowMajor: string;
  colMajor: string;
  storeRowMajor: string;
}

/**
 * naga's spelling as naga's WGSL front end defines it (coopLoad reads column-major, as
 * WGSL's matrices are stored); bench/gemm_gpu_check.ts probes it before it uses it.
 */
export const NAGA_LAYOUT: CoopLayout = { rowMajor: "coopLoadT", colMajor: "coopLoad", storeRowMajor: "coopStoreT" };

/**
 * Y[M,N] (=, +=) X[M,K] . W[N,K]^T, or for `swiglu` Y = silu(X.Wg^T) * (X.Wu^T), on
 * cooperative matrices (see the module comment). K % t.bk == 0 and N % 4 == 0.
 */
export function coopGemmShader(
  dtype: WeightDtype,
  kind: "plain" | "swiglu",
  t: CoopTile,
  layout: CoopLayout = NAGA_LAYOUT,
): string {
  checkCoopTile(t);
  const two = kind === "swiglu";
  const { bm, bn, bk, wm, wn } = t;
  const AP = pitch(t), warps = wm * wn, threads = warps * SUBGROUP;
  const wtm = bm / wm, wtn = bn / wn, fm = wtm / 16, fn = wtn / 16;
  const bk4 = bk / 4;
  const aRounds = (bm * bk4) / threads, bRounds = (bn * bk4) / threads;
  const mats = two ? ["B", "C"] : ["B"];
  const accs = two ? ["c", "d"] : ["c"];
  const L: string[] = [];
  const out = (s: string) => L.push(s);

  // zero source for the accumulators, then the accumulators
  for (let e = 0; e < 256; e += threads) out(`  S[tid + ${e}u] = 0.0;`);
  out(`  workgroupBarrier();`);
  for (const c of accs) {
    for (let i = 0; i < fm; i++) {
      for (let j = 0; j < fn; j++) out(`  var ${c}${i}_${j} = ${layout.rowMajor}<coop_mat16x16<f32, C>>(&S[0], 16u);`);
    }
  }
  // the registers holding the next k-slice
  for (let l = 0; l < aRounds; l++) out(`  var ra${l} = vec4<f32>(0.0);`);
  for (const m of mats) for (let l = 0; l < bRounds; l++) out(`  var r${m}${l} = vec4<f32>(0.0);`);
  const fetch = (k0: string) => {
    const s: string[] = [];
    for (let l = 0; l < aRounds; l++) {
      s.push(`    { let q = tid + ${l * threads}u; let row = m0 + q / ${bk4}u; let kq = ${k0} / 4u + q % ${bk4}u;`);
      s.push(`      ra${l} = select(vec4<f32>(0.0), X[min(row, p.M - 1u) * K4 + kq], row < p.M); }`);
    }
    for (let l = 0; l < bRounds; l++) {
      s.push(`    { let q = tid + ${l * threads}u; let col = n0 + q / ${bk4}u; let kq = ${k0} / 4u + q % ${bk4}u;`);
      s.push(`      let i = min(col, p.N - 1u) * K4 + kq;`);
      for (const m of mats) {
        const fn_ = m === "B" ? "Wq" : "Uq";
        s.push(`      r${m}${l} = select(vec4<f32>(0.0), ${fn_}(i), col < p.N);`);
      }
      s.push(`    }`);
    }
    return s.join("\n");
  };
  const store = () => {
    const s: string[] = [];
    const put = (arr: string, reg: string, rounds: number) => {
      for (let l = 0; l < rounds; l++) {
        s.push(`    { let q = tid + ${l * threads}u; let o = (q / ${bk4}u) * ${AP}u + (q % ${bk4}u) * 4u;`);
        for (let c = 0; c < 4; c++) s.push(`      ${arr}[o + ${c}u] = f16(${reg}${l}.${"xyzw"[c]});`);
        s.push(`    }`);
      }
    };
    put("As", "ra", aRounds);
    for (const m of mats) put(`${m}s`, `r${m}`, bRounds);
    return s.join("\n");
  };
  const multiply = () => {
    const s: string[] = [];
    for (let kk = 0; kk < bk / 16; kk++) {
      s.push(`    {`);
      for (let i = 0; i < fm; i++) {
        s.push(
          `      let a${i} = ${layout.rowMajor}<coop_mat16x16<f16, A>>(&As[(wy * ${wtm}u + ${i * 16}u) * ${AP}u + ${
            kk * 16
          }u], ${AP}u);`,
        );
      }
      for (let j = 0; j < fn; j++) {
        // B[k][n] = W[n][k], stored n-major: column-major with stride AP
        for (const m of mats) {
          s.push(
            `      let ${m.toLowerCase()}${j} = ${layout.colMajor}<coop_mat16x16<f16, B>>(&${m}s[(wx * ${wtn}u + ${
              j * 16
            }u) * ${AP}u + ${kk * 16}u], ${AP}u);`,
          );
        }
      }
      for (let i = 0; i < fm; i++) {
        for (let j = 0; j < fn; j++) {
          s.push(`      c${i}_${j} = coopMultiplyAdd(a${i}, b${j}, c${i}_${j});`);
          if (two) s.push(`      d${i}_${j} = coopMultiplyAdd(a${i}, c${j}, d${i}_${j});`);
        }
      }
      s.push(`    }`);
    }
    return s.join("\n");
  };
  // epilogue: fragment by fragment through this subgroup's scratch
  const sPer = two ? 512 : 256;
  const epi: string[] = [];
  for (let i = 0; i < fm; i++) {
    for (let j = 0; j < fn; j++) {
      epi.push(`  workgroupBarrier();`);
      epi.push(`  ${layout.storeRowMajor}(c${i}_${j}, &S[sb], 16u);`);
      if (two) epi.push(`  ${layout.storeRowMajor}(d${i}_${j}, &S[sb + 256u], 16u);`);
      epi.push(`  workgroupBarrier();`);
      for (let r = 0; r < 2; r++) {
        epi.push(`  { let e = lane + ${r * 32}u; let m = m0 + wy * ${wtm}u + ${i * 16}u + e / 4u;`);
        epi.push(`    let nq = (n0 + wx * ${wtn}u + ${j * 16}u) / 4u + e % 4u;`);
        epi.push(`    if (m < p.M && nq < N4) {`);
        epi.push(`      let o = sb + (e / 4u) * 16u + (e % 4u) * 4u;`);
        epi.push(`      let v = vec4<f32>(S[o], S[o + 1u], S[o + 2u], S[o + 3u]);`);
        if (two) {
          epi.push(`      let u = vec4<f32>(S[o + 256u], S[o + 257u], S[o + 258u], S[o + 259u]);`);
          epi.push(`      Y[m * N4 + nq] = v / (vec4<f32>(1.0) + exp(-v)) * u;`);
        } else {
          epi.push(
            `      if (p.accumulate == 1u) { Y[m * N4 + nq] = Y[m * N4 + nq] + v; } else { Y[m * N4 + nq] = v; }`,
          );
        }
        epi.push(`    } }`);
      }
    }
  }
  return `enable f16;
enable wgpu_cooperative_matrix;
${gemmBindings(dtype, two)}
var<workgroup> As: array<f16, ${bm * AP}>;
var<workgroup> Bs: array<f16, ${bn * AP}>;
${two ? `var<workgroup> Cs: array<f16, ${bn * AP}>;` : ""}
var<workgroup> S: array<f32, ${warps * sPer}>;

@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let m0 = wg.y * ${bm}u;
  let n0 = wg.x * ${bn}u;
  let K4 = p.K / 4u;
  let N4 = p.N / 4u;
  let warp = tid / ${SUBGROUP}u;
  let lane = tid % ${SUBGROUP}u;
  let wy = warp / ${wn}u;
  let wx = warp % ${wn}u;
  let sb = warp * ${sPer}u;
${L.join("\n")}
${fetch("0u")}
  for (var k0 = 0u; k0 < p.K; k0 = k0 + ${bk}u) {
    workgroupBarrier();
${store()}
    workgroupBarrier();
    if (k0 + ${bk}u < p.K) {
${fetch(`(k0 + ${bk}u)`)}
    }
${multiply()}
  }
${epi.join("\n")}
}`;
}
