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

/** GEMM tiling: BM x BN outputs per workgroup of (BM/TM) x (BN/TN) threads, TM x TN each. */
export interface GemmTile {
  bm: number;
  bn: number;
  bk: number;
  tm: number;
  tn: number;
}

/** The default tile (256 threads, 4x4 outputs each). */
export const GEMM_TILE: GemmTile = { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4 };

/** Tiles the engine may choose between by timing them on the adapter (all need K % 16 == 0). */
export const GEMM_TILES: GemmTile[] = [
  GEMM_TILE,
  { bm: 128, bn: 64, bk: 16, tm: 8, tn: 4 },
  { bm: 128, bn: 128, bk: 8, tm: 8, tn: 8 },
  { bm: 64, bn: 128, bk: 16, tm: 4, tn: 8 },
];

/** A short name of a tile, for logs and pipeline keys. */
export function tileName(t: GemmTile): string {
  return `${t.bm}x${t.bn}x${t.bk}/${t.tm}x${t.tn}`;
}

/**
 * Y[M,N] (=, +=) X[M,K] . W[N,K]^T, or for `swiglu` Y = silu(X.Wg^T) * (X.Wu^T).
 * Uniform p = (M, N, K, accumulate). K % bk == 0; M and N are bounds-checked. Thread
 * (x, y) owns rows y + i*ty and columns x + j*tx of the tile. Loops have constant trip
 * counts (GPU compilers unroll them); written as loops, the shader also compiles quickly
 * on CI's software adapter, which an unrolled version did not.
 */
export function gemmShader(dtype: WeightDtype, kind: "plain" | "swiglu", t: GemmTile = GEMM_TILE): string {
  const { bm, bn, bk, tm, tn } = t;
  const tx = bn / tn, ty = bm / tm, threads = tx * ty;
  const aLoads = (bm * bk) / 4 / threads, bLoads = (bn * bk) / 4 / threads;
  const two = kind === "swiglu";
  return `
struct P { M: u32, N: u32, K: u32, accumulate: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> W: array<u32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
${two ? "@group(0) @binding(4) var<storage, read> U: array<u32>;" : ""}
${weightLoader("W", dtype)}
${two ? weightLoader("U", dtype) : ""}
var<workgroup> As: array<f32, ${bk * bm}>;
var<workgroup> Bs: array<f32, ${bk * bn}>;
${two ? `var<workgroup> Cs: array<f32, ${bk * bn}>;` : ""}

@compute @workgroup_size(${tx}, ${ty})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let m0 = wg.y * ${bm}u;
  let n0 = wg.x * ${bn}u;
  let tid = lid.y * ${tx}u + lid.x;
  let K4 = p.K / 4u;
  var acc: array<f32, ${tm * tn}>;
  ${two ? `var acc2: array<f32, ${tm * tn}>;` : ""}
  for (var k0 = 0u; k0 < p.K; k0 = k0 + ${bk}u) {
    for (var l = 0u; l < ${aLoads}u; l = l + 1u) {
      let q = tid + l * ${threads}u;
      let row = q / ${bk / 4}u;
      let kq = q % ${bk / 4}u;
      var v = vec4<f32>(0.0);
      if (m0 + row < p.M) { v = X[(m0 + row) * K4 + k0 / 4u + kq]; }
      As[(kq * 4u + 0u) * ${bm}u + row] = v.x;
      As[(kq * 4u + 1u) * ${bm}u + row] = v.y;
      As[(kq * 4u + 2u) * ${bm}u + row] = v.z;
      As[(kq * 4u + 3u) * ${bm}u + row] = v.w;
    }
    for (var l = 0u; l < ${bLoads}u; l = l + 1u) {
      let q = tid + l * ${threads}u;
      let col = q / ${bk / 4}u;
      let kq = q % ${bk / 4}u;
      var v = vec4<f32>(0.0);
      ${two ? "var u = vec4<f32>(0.0);" : ""}
      if (n0 + col < p.N) {
        let e = (n0 + col) * p.K + k0 + kq * 4u;
        v = W_4(e);
        ${two ? "u = U_4(e);" : ""}
      }
      Bs[(kq * 4u + 0u) * ${bn}u + col] = v.x;
      Bs[(kq * 4u + 1u) * ${bn}u + col] = v.y;
      Bs[(kq * 4u + 2u) * ${bn}u + col] = v.z;
      Bs[(kq * 4u + 3u) * ${bn}u + col] = v.w;
      ${
    two
      ? `Cs[(kq * 4u + 0u) * ${bn}u + col] = u.x;
      Cs[(kq * 4u + 1u) * ${bn}u + col] = u.y;
      Cs[(kq * 4u + 2u) * ${bn}u + col] = u.z;
      Cs[(kq * 4u + 3u) * ${bn}u + col] = u.w;`
      : ""
  }
    }
    workgroupBarrier();
    for (var k = 0u; k < ${bk}u; k = k + 1u) {
      var a: array<f32, ${tm}>;
      for (var i = 0u; i < ${tm}u; i = i + 1u) { a[i] = As[k * ${bm}u + lid.y + i * ${ty}u]; }
      for (var j = 0u; j < ${tn}u; j = j + 1u) {
        let b = Bs[k * ${bn}u + lid.x + j * ${tx}u];
        ${two ? `let c = Cs[k * ${bn}u + lid.x + j * ${tx}u];` : ""}
        for (var i = 0u; i < ${tm}u; i = i + 1u) {
          acc[i * ${tn}u + j] = fma(a[i], b, acc[i * ${tn}u + j]);
          ${two ? `acc2[i * ${tn}u + j] = fma(a[i], c, acc2[i * ${tn}u + j]);` : ""}
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < ${tm}u; i = i + 1u) {
    let m = m0 + lid.y + i * ${ty}u;
    if (m >= p.M) { continue; }
    for (var j = 0u; j < ${tn}u; j = j + 1u) {
      let n = n0 + lid.x + j * ${tx}u;
      if (n >= p.N) { continue; }
      ${
    two
      ? `let g = acc[i * ${tn}u + j];
      Y[m * p.N + n] = g / (1.0 + exp(-g)) * acc2[i * ${tn}u + j];`
      : `let v = acc[i * ${tn}u + j];
      if (p.accumulate == 1u) { Y[m * p.N + n] = Y[m * p.N + n] + v; } else { Y[m * p.N + n] = v; }`
  }
    }
  }
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

/** Query and key rows per attention tile. */
export const ATT_BLOCK = 16;

/**
 * Causal grouped-query attention, flash style: scores exist only one BQ x BK tile at a
 * time (online softmax), never as a T x T matrix. Keys at or beyond a sequence's length
 * are never read; queries there write zeros. Output rows [B*T, H*hd] feed o_proj.
 * One workgroup of 256 threads per (query tile, head, sequence).
 */
export function attentionShader(hd: number): string {
  const B = ATT_BLOCK, per = (B * hd) / 256;
  return `
struct P { T: u32, H: u32, KV: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> Q: array<f32>;
@group(0) @binding(2) var<storage, read> Kc: array<f32>;
@group(0) @binding(3) var<storage, read> Vc: array<f32>;
@group(0) @binding(4) var<storage, read> lens: array<u32>;
@group(0) @binding(5) var<storage, read_write> O: array<f32>;
const HD = ${hd}u;
const BQ = ${B}u;
const BK = ${B}u;
var<workgroup> Qs: array<f32, ${B * hd}>;
var<workgroup> Ks: array<f32, ${B * hd}>;
var<workgroup> Vs: array<f32, ${B * hd}>;
var<workgroup> S: array<f32, ${B * B}>;
var<workgroup> alpha: array<f32, ${B}>;
var<workgroup> mrow: array<f32, ${B}>;
var<workgroup> lrow: array<f32, ${B}>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let tid = lid.x;
  let q0 = wg.x * BQ;
  let h = wg.y;
  let b = wg.z;
  let len = lens[b];
  let kvh = h / (p.H / p.KV);
  let qBase = ((b * p.H + h) * p.T) * HD;
  let kBase = ((b * p.KV + kvh) * p.T) * HD;
  let qi = tid / 16u;
  let dj = tid % 16u;
  if (q0 >= len) {
    for (var j = 0u; j < ${per}u; j = j + 1u) {
      if (q0 + qi < p.T) { O[((b * p.T + q0 + qi) * p.H + h) * HD + dj + j * 16u] = 0.0; }
    }
    return;
  }
  for (var e = tid; e < BQ * HD; e = e + 256u) {
    let r = e / HD;
    var v = 0.0;
    if (q0 + r < len) { v = Q[qBase + (q0 + r) * HD + e % HD]; }
    Qs[e] = v * p.scale;
  }
  if (tid < BQ) { mrow[tid] = -3.0e38; lrow[tid] = 0.0; }
  var o: array<f32, ${per}>;
  let kEnd = min(q0 + BQ, len);
  for (var k0 = 0u; k0 < kEnd; k0 = k0 + BK) {
    workgroupBarrier();
    for (var e = tid; e < BK * HD; e = e + 256u) {
      let r = e / HD;
      var kv = 0.0;
      var vv = 0.0;
      if (k0 + r < len) {
        kv = Kc[kBase + (k0 + r) * HD + e % HD];
        vv = Vc[kBase + (k0 + r) * HD + e % HD];
      }
      Ks[e] = kv;
      Vs[e] = vv;
    }
    workgroupBarrier();
    {
      let r = tid / BK;
      let c = tid % BK;
      var s = -3.0e38;
      if (k0 + c <= q0 + r && k0 + c < len) {
        var acc = 0.0;
        for (var d = 0u; d < HD; d = d + 1u) { acc = fma(Qs[r * HD + d], Ks[c * HD + d], acc); }
        s = acc;
      }
      S[tid] = s;
    }
    workgroupBarrier();
    if (tid < BQ) {
      var mx = mrow[tid];
      for (var c = 0u; c < BK; c = c + 1u) { mx = max(mx, S[tid * BK + c]); }
      var sum = 0.0;
      for (var c = 0u; c < BK; c = c + 1u) {
        let e = exp(S[tid * BK + c] - mx);
        S[tid * BK + c] = e;
        sum = sum + e;
      }
      let a = exp(mrow[tid] - mx);
      alpha[tid] = a;
      lrow[tid] = lrow[tid] * a + sum;
      mrow[tid] = mx;
    }
    workgroupBarrier();
    let a = alpha[qi];
    for (var j = 0u; j < ${per}u; j = j + 1u) {
      let d = dj + j * 16u;
      var acc = o[j] * a;
      for (var c = 0u; c < BK; c = c + 1u) { acc = fma(S[qi * BK + c], Vs[c * HD + d], acc); }
      o[j] = acc;
    }
  }
  workgroupBarrier();
  if (q0 + qi < p.T) {
    var inv = 0.0;
    if (q0 + qi < len) { inv = 1.0 / lrow[qi]; }
    for (var j = 0u; j < ${per}u; j = j + 1u) {
      O[((b * p.T + q0 + qi) * p.H + h) * HD + dj + j * 16u] = o[j] * inv;
    }
  }
}`;
}
