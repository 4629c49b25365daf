/**
 * WGSL kernels of the decoder forward pass. Activations are f32; weights stay in the
 * checkpoint's own format (bf16, f16 or f32) in GPU buffers and are widened to f32 as
 * they are loaded into a tile, so arithmetic is f32 everywhere. Widening bf16 is a
 * shift and f16 uses `unpack2x16float`, both core WGSL: the same shaders run on
 * adapters without `shader-f16` (CI's software adapter) and on real GPUs.
 */

/** Storage formats of weight tensors. */
export type WeightDtype = "BF16" | "F16" | "F32";

/** `fn <name>_4(e)` / `<name>_1(e)`: four weight elements from element e (e % 4 == 0), or one, widened to f32. */
export function weightLoader(name: string, dtype: WeightDtype): string {
  if (dtype === "F32") {
    return `fn ${name}_4(e: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<f32>(${name}[e]), bitcast<f32>(${name}[e + 1u]), bitcast<f32>(${name}[e + 2u]), bitcast<f32>(${name}[e + 3u]));
}
fn ${name}_1(e: u32) -> f32 { return bitcast<f32>(${name}[e]); }`;
  }
  if (dtype === "F16") {
    return `fn ${name}_4(e: u32) -> vec4<f32> {
  let a = unpack2x16float(${name}[e / 2u]);
  let b = unpack2x16float(${name}[e / 2u + 1u]);
  return vec4<f32>(a.x, a.y, b.x, b.y);
}
fn ${name}_1(e: u32) -> f32 { return unpack2x16float(${name}[e / 2u])[e % 2u]; }`;
  }
  return `fn ${name}_4(e: u32) -> vec4<f32> {
  let a = ${name}[e / 2u];
  let b = ${name}[e / 2u + 1u];
  return vec4<f32>(bitcast<f32>(a << 16u), bitcast<f32>(a & 0xffff0000u), bitcast<f32>(b << 16u), bitcast<f32>(b & 0xffff0000u));
}
fn ${name}_1(e: u32) -> f32 {
  let a = ${name}[e / 2u];
  return bitcast<f32>(select(a << 16u, a & 0xffff0000u, (e % 2u) == 1u));
}`;
}

/** WGSL that sums `value` over a workgroup of `size` threads into `part[0]` (tree reduction). */
function workgroupSum(value: string, size: number): string {
  return `part[lid.x] = ${value};
  workgroupBarrier();
  for (var w = ${size / 2}u; w > 0u; w = w / 2u) {
    if (lid.x < w) { part[lid.x] = part[lid.x] + part[lid.x + w]; }
    workgroupBarrier();
  }`;
}

/** GEMM tiling: BM x BN outputs per workgroup of (BM/TM) x (BN/TN) threads, TM x TN each (TM, TN multiples of 4). */
export interface GemmTile {
  bm: number;
  bn: number;
  bk: number;
  tm: number;
  tn: number;
  /**
   * workgroup-memory buffers per operand: 1 (the default: two barriers per k-slice, the
   * next slice stored after the current one is used) or 2 (double-buffered: the next
   * slice is stored into the other buffer while this one is read, one barrier per slice,
   * twice the workgroup memory)
   */
  stages?: 1 | 2;
  /**
   * how threads split a k-slice's global loads: true gives consecutive threads consecutive
   * k-quads of the same rows (whole 32-byte sectors), with the workgroup tiles' rows padded
   * by one vec4 so that the transposed stores spread over the banks; false (the first
   * kernels') gives consecutive threads consecutive row quads, each 4 rows at one k-quad,
   * so a warp's load touches 32 rows, 16 bytes each. Same sums in the same order either
   * way; on an H200, coalesced loads made the 8B model's GEMMs 10-15% faster (f32) and
   * 15-20% (f16).
   */
  coalesced?: boolean;
}

/** The small tile (256 threads, 4x4 outputs each): the fallback for small products and CI's software adapter. */
export const GEMM_TILE: GemmTile = { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4, coalesced: true };

/** Candidate tiles, largest first (all need K % 16 == 0). */
export const GEMM_TILES: GemmTile[] = [
  { bm: 128, bn: 128, bk: 16, tm: 8, tn: 8, coalesced: true },
  { bm: 128, bn: 64, bk: 16, tm: 8, tn: 4, coalesced: true },
  GEMM_TILE,
];

/**
 * Larger tiles the default rule does not pick, kept for timing them end to end on a GPU
 * (bench/hf_gpu_check.ts, `wgsl+k32` / `wgsl+n256`). Timed alone on an H200 (steady
 * clocks, bench/gemm_gpu_check.ts): with f32 arithmetic, 128 x 256 ran the 8B shapes at
 * 2,048 rows 10-15% faster than 128 x 128 and at 1,080 rows 15% slower; a 32-deep slice
 * changed f32 little (it is what f16 arithmetic uses, see F16_TILES).
 */
export const LARGE_GEMM_TILES = {
  /** 128 x 128 with a 32-deep k-slice */
  k32: { bm: 128, bn: 128, bk: 32, tm: 8, tn: 8, coalesced: true },
  /** 128 x 256, 8 x 16 outputs per thread */
  n256: { bm: 128, bn: 256, bk: 16, tm: 8, tn: 16, coalesced: true },
} as const satisfies Record<string, GemmTile>;

/** Candidate tiles of the gate/up GEMM (two accumulators per output: half the columns of GEMM_TILES' first). */
export const SWIGLU_TILES: GemmTile[] = [
  { bm: 128, bn: 64, bk: 16, tm: 8, tn: 4, coalesced: true },
  GEMM_TILE,
];

/**
 * The tiles of f16 arithmetic: 32-deep k-slices (each slice's f16 sum holds 32 products
 * before it is added into f32: half the flushes of 16-deep ones), and 128 threads of 8 x 8
 * (or 8 x 4 two-product) outputs for the large products: the f16 sums take registers on
 * top of the f32 ones, and a 128-thread workgroup's share lets more of them run on a
 * compute unit at once. Timed alone on an H200 (bench/gemm_gpu_check.ts, 8B shapes):
 * 36-45 TFLOP/s, against 28-40 for 256-thread 128 x 128 tiles and 22-31 for the f32
 * kernels. Products whose K is not a multiple of 32 take GEMM_TILE.
 */
export const F16_TILES: { plain: GemmTile[]; swiglu: GemmTile[] } = {
  plain: [
    { bm: 128, bn: 64, bk: 32, tm: 8, tn: 8, coalesced: true },
    { ...GEMM_TILE, bk: 32 },
  ],
  swiglu: [
    { bm: 64, bn: 64, bk: 32, tm: 8, tn: 4, coalesced: true },
    { ...GEMM_TILE, bk: 32 },
  ],
};

/** The same tiles with the first kernels' loads (GemmTile.coalesced false), for comparisons. */
export function strided(tiles: GemmTile[]): GemmTile[] {
  return tiles.map((t) => ({ ...t, coalesced: false }));
}

/**
 * The tiles the engine uses for a product of M rows and N columns: the first tile of
 * `tiles` (largest first) that still gives at least `minWorkgroups` workgroups, so a
 * big product gets big tiles (more arithmetic per load) and a small one keeps the GPU's
 * cores busy; the last tile otherwise.
 */
export function pickTile<T extends { bm: number; bn: number }>(
  M: number,
  N: number,
  tiles: T[],
  minWorkgroups: number,
): T {
  for (const t of tiles) if (Math.ceil(M / t.bm) * Math.ceil(N / t.bn) >= minWorkgroups) return t;
  return tiles[tiles.length - 1];
}

/** A short name of a tile, for logs and pipeline keys. */
export function tileName(t: GemmTile): string {
  return `${t.bm}x${t.bn}x${t.bk}/${t.tm}x${t.tn}${t.stages === 2 ? "/db" : ""}${t.coalesced ? "/c" : ""}`;
}

/** The same tiles, double-buffered (GemmTile.stages = 2). */
export function doubleBuffered(tiles: GemmTile[]): GemmTile[] {
  return tiles.map((t) => ({ ...t, stages: 2 }));
}

/** The same tiles with coalesced loads (GemmTile.coalesced). */
export function coalesced(tiles: GemmTile[]): GemmTile[] {
  return tiles.map((t) => ({ ...t, coalesced: true }));
}

/** Bytes of workgroup memory a GEMM tile's kernel declares (f32 tiles; half that for f16). */
export function gemmWorkgroupBytes(t: GemmTile, kind: "plain" | "swiglu"): number {
  const pad = t.coalesced ? 4 : 0;
  return (t.stages ?? 1) * t.bk * (t.bm + pad + (kind === "swiglu" ? 2 : 1) * (t.bn + pad)) * 4;
}

/**
 * The tiles whose kernels fit `limitBytes` of workgroup memory (the device's
 * maxComputeWorkgroupStorageSize), in order; the small tile where none does.
 */
export function tilesWithin(
  tiles: GemmTile[],
  kind: "plain" | "swiglu",
  arith: GemmArith,
  limitBytes: number,
): GemmTile[] {
  const fits = tiles.filter((t) => gemmWorkgroupBytes(t, kind) * (arith === "f16" ? 0.5 : 1) <= limitBytes);
  return fits.length ? fits : [GEMM_TILE];
}

/** WGSL binding and quad loader `fn <name>q(i) -> vec4<f32>` (elements 4i..4i+3) of a weight buffer. */
function weightQuads(name: string, binding: number, dtype: WeightDtype): string {
  if (dtype === "F32") {
    return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<vec4<f32>>;
fn ${name}q(i: u32) -> vec4<f32> { return ${name}[i]; }`;
  }
  const widen = dtype === "F16"
    ? `return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));`
    : `return vec4<f32>(bitcast<f32>(v.x << 16u), bitcast<f32>(v.x & 0xffff0000u), bitcast<f32>(v.y << 16u), bitcast<f32>(v.y & 0xffff0000u));`;
  return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<vec2<u32>>;
fn ${name}q(i: u32) -> vec4<f32> { let v = ${name}[i]; ${widen} }`;
}

/**
 * The GEMM kernels' bindings (every GEMM kernel, scalar or cooperative, has these, so the
 * engine can swap kernels): uniform P = (M, N, K, accumulate), X f32 [M,K], W [N,K] in its
 * checkpoint dtype, Y f32 [M,N], and for SwiGLU (`two`) U, the up projection.
 */
export function gemmBindings(dtype: WeightDtype, two: boolean): string {
  return `struct P { M: u32, N: u32, K: u32, accumulate: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;
${weightQuads("W", 2, dtype)}
@group(0) @binding(3) var<storage, read_write> Y: array<vec4<f32>>;
${two ? weightQuads("U", 4, dtype) : ""}`;
}

const LANE = ["x", "y", "z", "w"];

/**
 * The GEMM's arithmetic: "f32" (the default: f32 tiles, every product added into an f32
 * accumulator), or "f16": tiles in workgroup memory and the products of each k-slice
 * summed in f16 (`shader-f16`; two f16 lanes per instruction), each slice's sum then
 * added into the f32 accumulator, so at most `bk` products are ever summed in f16.
 * "f16-structure" is the f16 kernel with f16 replaced by f32 (one alias line): what a
 * software adapter without `shader-f16` can run, so the tests check the f16 kernel's
 * structure there.
 */
export type GemmArith = "f32" | "f16" | "f16-structure";

/**
 * Y[M,N] (=, +=) X[M,K] . W[N,K]^T, or for `swiglu` Y = silu(X.Wg^T) * (X.Wu^T).
 * Uniform p = (M, N, K, accumulate). K % bk == 0 and N % 4 == 0; M and N are
 * bounds-checked. Register-tiled and generated fully unrolled: every private value is a
 * named vec4 (no run-time indexed private arrays, which WebGPU's bounds checks would keep
 * out of registers). Thread (x, y) owns row quads y + i*ty and column quads x + j*tx of
 * the tile, read from workgroup memory as vec4s. Each thread loads 4x4 blocks (4 rows x
 * one k-quad) of the next k-slice into registers while the current slice is multiplied,
 * and stores them transposed (k-major) so the inner loop reads vectors. With `t.stages = 2`
 * the slices alternate between two workgroup buffers (loop unrolled by two), one barrier
 * per slice.
 */
export function gemmShader(
  dtype: WeightDtype,
  kind: "plain" | "swiglu",
  t: GemmTile = GEMM_TILE,
  arith: GemmArith = "f32",
): string {
  const { bm, bn, bk, tm, tn } = t;
  // the tiles' and the slice sums' type: T (an alias) in the f16 kernels, f32 otherwise
  const half = arith !== "f32", T = half ? "T" : "f32";
  const toT = (v: string) => half ? `vec4<T>(${v})` : v;
  const tx = bn / tn, ty = bm / tm, threads = tx * ty;
  const bm4 = bm / 4, bn4 = bn / 4, bk4 = bk / 4;
  const two = kind === "swiglu";
  // coalesced: thread q loads k-quad q % bk4 of row quad q / bk4; tile rows padded to w4 + 1 vec4s
  const co = t.coalesced === true;
  const [am4, an4] = co ? [bm4 + 1, bn4 + 1] : [bm4, bn4];
  const rowQuad = (w4: number) => co ? `(q / ${bk4}u)` : `(q % ${w4}u)`;
  const kQuad = (w4: number) => co ? `q % ${bk4}u` : `q / ${w4}u`;
  const aRounds = Math.ceil((bm4 * bk4) / threads), bRounds = Math.ceil((bn4 * bk4) / threads);
  const mats = two ? ["B", "C"] : ["B"];
  const lines: string[] = [];
  const out = (s: string) => lines.push(s);
  // declarations of the prefetch registers and accumulators
  for (let l = 0; l < aRounds; l++) for (let i = 0; i < 4; i++) out(`  var ra${l}_${i} = vec4<${T}>(0.0);`);
  for (const m of mats) {
    for (let l = 0; l < bRounds; l++) for (let i = 0; i < 4; i++) out(`  var r${m}${l}_${i} = vec4<${T}>(0.0);`);
  }
  for (let r = 0; r < tm; r++) {
    for (let j = 0; j < tn / 4; j++) {
      out(`  var acc${r}_${j} = vec4<f32>(0.0);`);
      if (two) out(`  var acd${r}_${j} = vec4<f32>(0.0);`);
      if (half) {
        out(`  var hcc${r}_${j} = vec4<T>(0.0);`);
        if (two) out(`  var hcd${r}_${j} = vec4<T>(0.0);`);
      }
    }
  }
  const fetch = (k0: string) => {
    const s: string[] = [];
    for (let l = 0; l < aRounds; l++) {
      s.push(
        `    { let q = tid + ${l * threads}u;${aRounds * threads > bm4 * bk4 ? ` if (q < ${bm4 * bk4}u) {` : " {"}`,
      );
      s.push(`      let row = m0 + ${rowQuad(bm4)} * 4u; let kq = ${k0} / 4u + ${kQuad(bm4)};`);
      for (let i = 0; i < 4; i++) {
        s.push(
          `      ra${l}_${i} = ${
            toT(`select(vec4<f32>(0.0), X[min(row + ${i}u, p.M - 1u) * K4 + kq], row + ${i}u < p.M)`)
          };`,
        );
      }
      s.push(`    } }`);
    }
    for (let l = 0; l < bRounds; l++) {
      s.push(
        `    { let q = tid + ${l * threads}u;${bRounds * threads > bn4 * bk4 ? ` if (q < ${bn4 * bk4}u) {` : " {"}`,
      );
      s.push(`      let col = n0 + ${rowQuad(bn4)} * 4u; let kq = ${k0} / 4u + ${kQuad(bn4)};`);
      for (let i = 0; i < 4; i++) {
        const idx = `min(col + ${i}u, p.N - 1u) * K4 + kq`, ok = `col + ${i}u < p.N`;
        s.push(`      rB${l}_${i} = ${toT(`select(vec4<f32>(0.0), Wq(${idx}), ${ok})`)};`);
        if (two) s.push(`      rC${l}_${i} = ${toT(`select(vec4<f32>(0.0), Uq(${idx}), ${ok})`)};`);
      }
      s.push(`    } }`);
    }
    return s.join("\n");
  };
  // the workgroup buffer a slice is stored to (`into`: 0 or 1, the second only with two
  // stages) and read from (compute); the double-buffered loop is unrolled by two so that
  // both buffers are at constant offsets
  const db = t.stages === 2;
  const store = (into: 0 | 1) => {
    const s: string[] = [];
    // w4: row quads of the tile; p4: the stored row's length in vec4s (w4, or w4 + 1 padded)
    const put = (arr: string, reg: string, l: number, w4: number, p4: number, rounds: number) => {
      const off = into === 1 ? `${bk * p4}u + ` : "";
      s.push(`    { let q = tid + ${l * threads}u;${rounds * threads > w4 * bk4 ? ` if (q < ${w4 * bk4}u) {` : " {"}`);
      s.push(`      let base = ${off}(${kQuad(w4)}) * ${4 * p4}u + ${rowQuad(w4)};`);
      for (let c = 0; c < 4; c++) {
        const v = [0, 1, 2, 3].map((i) => `${reg}${l}_${i}.${LANE[c]}`).join(", ");
        s.push(`      ${arr}[base + ${c * p4}u] = vec4<${T}>(${v});`);
      }
      s.push(`    } }`);
    };
    for (let l = 0; l < aRounds; l++) put("As", "ra", l, bm4, am4, aRounds);
    for (const m of mats) for (let l = 0; l < bRounds; l++) put(`${m}s`, `r${m}`, l, bn4, an4, bRounds);
    return s.join("\n");
  };
  const computeFrom = (from: 0 | 1) => {
    const compute: string[] = [];
    for (let k = 0; k < bk; k++) {
      compute.push(`    {`);
      const ao = from === 1 ? `${bk * am4}u + ` : "", bo = from === 1 ? `${bk * an4}u + ` : "";
      for (let i = 0; i < tm / 4; i++) compute.push(`      let a${i} = As[${ao}${k * am4}u + lid.y + ${i * ty}u];`);
      for (let j = 0; j < tn / 4; j++) {
        compute.push(`      let b${j} = Bs[${bo}${k * an4}u + lid.x + ${j * tx}u];`);
        if (two) compute.push(`      let c${j} = Cs[${bo}${k * an4}u + lid.x + ${j * tx}u];`);
      }
      // f32: into the accumulators; f16: into the slice's sums (hcc, hcd)
      const [sa, sd] = half ? ["hcc", "hcd"] : ["acc", "acd"];
      for (let i = 0; i < tm / 4; i++) {
        for (let r = 0; r < 4; r++) {
          const a = `vec4<${T}>(a${i}.${LANE[r]})`, row = i * 4 + r;
          for (let j = 0; j < tn / 4; j++) {
            compute.push(`      ${sa}${row}_${j} = fma(${a}, b${j}, ${sa}${row}_${j});`);
            if (two) compute.push(`      ${sd}${row}_${j} = fma(${a}, c${j}, ${sd}${row}_${j});`);
          }
        }
      }
      compute.push(`    }`);
    }
    if (half) {
      // the slice's sums into the f32 accumulators, and reset
      for (let r = 0; r < tm; r++) {
        for (let j = 0; j < tn / 4; j++) {
          compute.push(`    acc${r}_${j} = acc${r}_${j} + vec4<f32>(hcc${r}_${j}); hcc${r}_${j} = vec4<T>(0.0);`);
          if (two) {
            compute.push(`    acd${r}_${j} = acd${r}_${j} + vec4<f32>(hcd${r}_${j}); hcd${r}_${j} = vec4<T>(0.0);`);
          }
        }
      }
    }
    return compute.join("\n");
  };
  const write: string[] = [];
  for (let i = 0; i < tm / 4; i++) {
    for (let r = 0; r < 4; r++) {
      const row = i * 4 + r;
      write.push(`  { let m = m0 + (lid.y + ${i * ty}u) * 4u + ${r}u; if (m < p.M) {`);
      for (let j = 0; j < tn / 4; j++) {
        write.push(`    { let nq = n0 / 4u + lid.x + ${j * tx}u; if (nq < N4) {`);
        if (two) {
          write.push(`      let g = acc${row}_${j};`);
          write.push(`      Y[m * N4 + nq] = g / (vec4<f32>(1.0) + exp(-g)) * acd${row}_${j};`);
        } else {
          write.push(
            `      if (p.accumulate == 1u) { Y[m * N4 + nq] = Y[m * N4 + nq] + acc${row}_${j}; } else { Y[m * N4 + nq] = acc${row}_${j}; }`,
          );
        }
        write.push(`    } }`);
      }
      write.push(`  } }`);
    }
  }
  const prelude = arith === "f16"
    ? "enable f16;\nalias T = f16;\n"
    : arith === "f16-structure"
    ? "alias T = f32;\n"
    : "";
  return `${prelude}
${gemmBindings(dtype, two)}
var<workgroup> As: array<vec4<${T}>, ${(db ? 2 : 1) * bk * am4}>;
var<workgroup> Bs: array<vec4<${T}>, ${(db ? 2 : 1) * bk * an4}>;
${two ? `var<workgroup> Cs: array<vec4<${T}>, ${(db ? 2 : 1) * bk * an4}>;` : ""}

@compute @workgroup_size(${tx}, ${ty})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let m0 = wg.y * ${bm}u;
  let n0 = wg.x * ${bn}u;
  let tid = lid.y * ${tx}u + lid.x;
  let K4 = p.K / 4u;
  let N4 = p.N / 4u;
${lines.join("\n")}
${fetch("0u")}
${
    db
      ? `${store(0)}
  workgroupBarrier();
  for (var k0 = 0u; k0 < p.K; k0 = k0 + ${2 * bk}u) {
    let more = k0 + ${bk}u < p.K;
    if (more) {
${fetch(`(k0 + ${bk}u)`)}
    }
${computeFrom(0)}
    if (more) {
${store(1)}
    }
    workgroupBarrier();
    if (more) {
      let more2 = k0 + ${2 * bk}u < p.K;
      if (more2) {
${fetch(`(k0 + ${2 * bk}u)`)}
      }
${computeFrom(1)}
      if (more2) {
${store(0)}
      }
      workgroupBarrier();
    }
  }`
      : `  for (var k0 = 0u; k0 < p.K; k0 = k0 + ${bk}u) {
    workgroupBarrier();
${store(0)}
    workgroupBarrier();
    if (k0 + ${bk}u < p.K) {
${fetch(`(k0 + ${bk}u)`)}
    }
${computeFrom(0)}
  }`
  }
${write.join("\n")}
}`;
}

/**
 * RMSNorm of rows: Y[r] = g * X[src] / sqrt(mean(X[src]^2) + eps), src = r, or
 * rows[r] when `indexed` (the last token of each sequence). One workgroup per row.
 */
export function rmsNormShader(dtype: WeightDtype, indexed: boolean): string {
  return `
struct P { D: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> G: array<u32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
${indexed ? "@group(0) @binding(4) var<storage, read> rows: array<u32>;" : ""}
${weightLoader("G", dtype)}
var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = wg.x;
  let src = ${indexed ? "rows[r]" : "r"} * p.D;
  var s = 0.0;
  for (var i = lid.x; i < p.D; i = i + 256u) { let v = X[src + i]; s = s + v * v; }
  ${workgroupSum("s", 256)}
  let inv = 1.0 / sqrt(part[0] / f32(p.D) + p.eps);
  for (var i = lid.x; i < p.D; i = i + 256u) { Y[r * p.D + i] = G_1(i) * (X[src + i] * inv); }
}`;
}

/**
 * Splits the fused QKV rows [B*T, (H + 2KV) * hd] into per-head Q [B,H,T,hd] and K, V
 * [B,KV,T,hd]; applies Qwen3's per-head RMSNorm (when `qkNorm`) and the rotary embedding
 * (cos/sin tables [T, hd/2]) to Q and K. One workgroup of 64 threads per (token, head).
 */
export function ropeShader(dtype: WeightDtype, qkNorm: boolean): string {
  return `
struct P { T: u32, H: u32, KV: u32, hd: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> QKV: array<f32>;
@group(0) @binding(2) var<storage, read> CS: array<f32>;
@group(0) @binding(3) var<storage, read_write> Q: array<f32>;
@group(0) @binding(4) var<storage, read_write> Kc: array<f32>;
@group(0) @binding(5) var<storage, read_write> Vc: array<f32>;
${
    qkNorm
      ? "@group(0) @binding(6) var<storage, read> QN: array<u32>;\n@group(0) @binding(7) var<storage, read> KN: array<u32>;"
      : ""
  }
${qkNorm ? weightLoader("QN", dtype) + "\n" + weightLoader("KN", dtype) : ""}
var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let m = wg.x;
  let head = wg.y;
  let b = m / p.T;
  let t = m % p.T;
  let half = p.hd / 2u;
  let width = (p.H + 2u * p.KV) * p.hd;
  let src = m * width + head * p.hd;
  if (head >= p.H + p.KV) {
    let h = head - p.H - p.KV;
    for (var i = lid.x; i < p.hd; i = i + 64u) { Vc[((b * p.KV + h) * p.T + t) * p.hd + i] = QKV[src + i]; }
    return;
  }
  var scale = 1.0;
  ${
    qkNorm
      ? `var s = 0.0;
  for (var i = lid.x; i < p.hd; i = i + 64u) { let v = QKV[src + i]; s = s + v * v; }
  ${workgroupSum("s", 64)}
  scale = 1.0 / sqrt(part[0] / f32(p.hd) + p.eps);`
      : ""
  }
  for (var i = lid.x; i < half; i = i + 64u) {
    var x1 = QKV[src + i] * scale;
    var x2 = QKV[src + i + half] * scale;
    ${
    qkNorm
      ? `if (head < p.H) { x1 = QN_1(i) * x1; x2 = QN_1(i + half) * x2; } else { x1 = KN_1(i) * x1; x2 = KN_1(i + half) * x2; }`
      : ""
  }
    let c = CS[(t * half + i) * 2u];
    let sn = CS[(t * half + i) * 2u + 1u];
    let o1 = x1 * c - x2 * sn;
    let o2 = x2 * c + x1 * sn;
    if (head < p.H) {
      let d = ((b * p.H + head) * p.T + t) * p.hd;
      Q[d + i] = o1;
      Q[d + i + half] = o2;
    } else {
      let d = ((b * p.KV + head - p.H) * p.T + t) * p.hd;
      Kc[d + i] = o1;
      Kc[d + i + half] = o2;
    }
  }
}`;
}

/** Workgroup memory (bytes) the attention kernel needs for head size `hd` and `bk` keys per tile. */
export function attentionBytes(hd: number, bk: number): number {
  const hd4 = hd / 4;
  return (attentionRows(hd) * hd4 + bk * (hd4 + 1) + bk * hd4) * 16 + 2 * attentionRows(hd) * (bk + 1) * 4;
}

/** Query rows per attention workgroup for head size `hd` (256 threads, min(8, hd/4) per query row). */
export function attentionRows(hd: number): number {
  return 256 / Math.min(8, hd / 4);
}

/**
 * Causal grouped-query attention, flash style: scores exist only one BQ x bk tile at a
 * time (online softmax), never as a T x T matrix. Keys at or beyond a sequence's length
 * are never used; queries there write zeros. Output rows [B*T, H*hd] feed o_proj. One
 * workgroup of 256 threads per (query tile, head, sequence); each query row has `tpr`
 * threads, which share its scores (bk/tpr keys each) and its output (hd/4/tpr vec4s
 * each). Workgroup memory is read as vec4s, keys with a padded stride (no bank conflicts).
 */
export function attentionShader(hd: number, bk = 16): string {
  const tpr = Math.min(8, hd / 4), BQ = 256 / tpr, BK = bk, hd4 = hd / 4, kStride = hd4 + 1;
  const perCols = BK / tpr, perOut = hd4 / tpr;
  const decl: string[] = [], scores: string[] = [], pv: string[] = [];
  for (let j = 0; j < perOut; j++) decl.push(`  var o${j} = vec4<f32>(0.0);`);
  for (let j = 0; j < perCols; j++) {
    scores.push(`      { let c = cl + ${j * tpr}u; var s = 0.0;
        for (var d = 0u; d < HD4; d = d + 1u) { s = s + dot(Qs[r * HD4 + d], Ks[c * ${kStride}u + d]); }
        if (k0 + c > q0 + r || k0 + c >= len) { s = -3.0e38; }
        S[r * ${BK + 1}u + c] = s; }`);
  }
  for (let j = 0; j < perOut; j++) {
    pv.push(`        o${j} = fma(vec4<f32>(pc), Vs[c * HD4 + cl + ${j * tpr}u], o${j});`);
  }
  return `
struct P { T: u32, H: u32, KV: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> Kc: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> Vc: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> lens: array<u32>;
@group(0) @binding(5) var<storage, read_write> O: array<vec4<f32>>;
const HD4 = ${hd4}u;
const BQ = ${BQ}u;
const BK = ${BK}u;
var<workgroup> Qs: array<vec4<f32>, ${BQ * hd4}>;
var<workgroup> Ks: array<vec4<f32>, ${BK * kStride}>;
var<workgroup> Vs: array<vec4<f32>, ${BK * hd4}>;
var<workgroup> S: array<f32, ${BQ * (BK + 1)}>;
var<workgroup> Pm: array<f32, ${BQ * (BK + 1)}>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let tid = lid.x;
  let q0 = wg.x * BQ;
  let h = wg.y;
  let b = wg.z;
  let len = lens[b];
  let kvh = h / (p.H / p.KV);
  let qBase = ((b * p.H + h) * p.T) * HD4;
  let kBase = ((b * p.KV + kvh) * p.T) * HD4;
  let r = tid / ${tpr}u;
  let cl = tid % ${tpr}u;
  let orow = ((b * p.T + q0 + r) * p.H + h) * HD4;
${decl.join("\n")}
  if (q0 >= len) {
    if (q0 + r < p.T) {
${[...Array(perOut).keys()].map((j) => `      O[orow + cl + ${j * tpr}u] = vec4<f32>(0.0);`).join("\n")}
    }
    return;
  }
  for (var e = tid; e < BQ * HD4; e = e + 256u) {
    let row = e / HD4;
    var v = vec4<f32>(0.0);
    if (q0 + row < len) { v = Q[qBase + (q0 + row) * HD4 + e % HD4]; }
    Qs[e] = v * p.scale;
  }
  var mrow = -3.0e38;
  var lrow = 0.0;
  let kEnd = min(q0 + BQ, len);
  for (var k0 = 0u; k0 < kEnd; k0 = k0 + BK) {
    workgroupBarrier();
    for (var e = tid; e < BK * HD4; e = e + 256u) {
      let row = e / HD4;
      let d = e % HD4;
      var kv = vec4<f32>(0.0);
      var vv = vec4<f32>(0.0);
      if (k0 + row < len) {
        kv = Kc[kBase + (k0 + row) * HD4 + d];
        vv = Vc[kBase + (k0 + row) * HD4 + d];
      }
      Ks[row * ${kStride}u + d] = kv;
      Vs[e] = vv;
    }
    workgroupBarrier();
${scores.join("\n")}
    workgroupBarrier();
    var mx = mrow;
    for (var c = 0u; c < BK; c = c + 1u) { mx = max(mx, S[r * ${BK + 1}u + c]); }
${
    [...Array(perCols).keys()].map((j) =>
      `    { let c = cl + ${j * tpr}u; Pm[r * ${BK + 1}u + c] = exp(S[r * ${BK + 1}u + c] - mx); }`
    ).join("\n")
  }
    let alpha = exp(mrow - mx);
    mrow = mx;
${[...Array(perOut).keys()].map((j) => `    o${j} = o${j} * alpha;`).join("\n")}
    workgroupBarrier();
    var lsum = 0.0;
    for (var c = 0u; c < BK; c = c + 1u) {
      let pc = Pm[r * ${BK + 1}u + c];
      lsum = lsum + pc;
${pv.join("\n")}
    }
    lrow = lrow * alpha + lsum;
  }
  if (q0 + r < p.T) {
    var inv = 0.0;
    if (q0 + r < len) { inv = 1.0 / lrow; }
${[...Array(perOut).keys()].map((j) => `    O[orow + cl + ${j * tpr}u] = o${j} * inv;`).join("\n")}
  }
}`;
}
