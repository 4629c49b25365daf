/**
 * A low-rank multi-user Bradley–Terry fit over the seen users' train pairs, the start of
 * mrm-p (docs/method.md §8). Each seen user a gets weights o + M_a over the (scaled) pair
 * differences d, and the user deviations M (users x H) are kept low-rank by a nuclear
 * norm penalty:
 *
 *   minimise  sum_a sum_{p of a} softplus(-(o + M_a) . d_p) + mu/2 |o|^2 + lambda |M|_*
 *
 * This is convex; it is solved by accelerated proximal gradient (FISTA), whose proximal
 * step soft-thresholds M's singular values. lambda is set relative to the noise: it is
 * `shrink` times the largest singular value of a matrix with the same noise as the
 * users' gradients but no signal (each pair's gradient term with a random sign, at the
 * pooled fit), so singular directions the users share above noise survive and the rest
 * are cut.
 */
import { PyRandom } from "../data/rng.ts";
import { sigmoid, softplus } from "../model/kspace.ts";
import { rowCombination } from "../model/project.ts";

/** Pair differences of the users, row-major, and where each user's rows start. */
export interface PairRows {
  /** N x H pair differences (chosen - rejected), in any fixed scale */
  d: Float64Array;
  /** U + 1 offsets into the rows: user a owns rows start[a] .. start[a + 1] - 1 */
  start: Int32Array;
  /** columns H */
  dim: number;
}

/** Settings of the low-rank fit. */
export interface LowRankOptions {
  /** lambda as a multiple of the noise level @default 0.5 */
  shrink?: number;
  /** ridge on the shared weights o @default 1 */
  mu?: number;
  /** iterations of the proximal gradient @default 150 */
  iterations?: number;
  /**
   * singular directions kept by each proximal step. With min(U, H) the step is the exact
   * proximal operator of the nuclear norm; below that it keeps only the top ones, which
   * is exact whenever fewer survive the threshold (the fits on the synthetic stores end at
   * rank 10-15) @default 24
   */
  rank?: number;
  /** seed of the noise draws and the subspace iteration */
  seed?: number;
}

/** The fit. */
export interface LowRankFit {
  /** the shared weights o (H) */
  shared: Float64Array;
  /** the users' deviations M (U x H) */
  deviations: Float64Array;
  /** the noise level (largest singular value of the signal-free gradient matrix) */
  noise: number;
  /** the nuclear-norm strength used */
  lambda: number;
  /** non-zero singular values of M */
  rank: number;
  /** the singular directions each proximal step kept (when rank reaches it, the step was truncated) */
  kept: number;
  /** objective value after the last iteration */
  objective: number;
}

/** Largest eigenvalue of sum over rows r0..r1 of d d^T, by power iteration. */
function rowsNorm2(p: PairRows, r0: number, r1: number, rng: PyRandom): number {
  const H = p.dim;
  let v = Float64Array.from({ length: H }, () => rng.normal());
  let ev = 0;
  for (let it = 0; it < 30; it++) {
    const out = new Float64Array(H);
    for (let r = r0; r < r1; r++) {
      let s = 0;
      const o = r * H;
      for (let h = 0; h < H; h++) s += p.d[o + h] * v[h];
      for (let h = 0; h < H; h++) out[h] += s * p.d[o + h];
    }
    let n = 0;
    for (let h = 0; h < H; h++) n += out[h] * out[h];
    n = Math.sqrt(n);
    if (n === 0) return 0;
    ev = n;
    for (let h = 0; h < H; h++) out[h] /= n;
    v = out;
  }
  return ev;
}

/**
 * Orthonormalises the rows of A (rows x cols) in place (Gram–Schmidt, two passes). A row
 * that lies in the span of the rows before it (under 1e-10 of its length remains) is set
 * to zero, or, given `rng`, restarted from noise until it is independent.
 */
export function orthonormalRows(a: Float64Array, rows: number, cols: number, rng?: PyRandom): void {
  for (let j = 0; j < rows; j++) {
    const rj = j * cols;
    for (let attempt = 0; attempt < 5; attempt++) {
      let before = 0;
      for (let h = 0; h < cols; h++) before += a[rj + h] * a[rj + h];
      for (let pass = 0; pass < 2; pass++) {
        for (let i = 0; i < j; i++) {
          const ri = i * cols;
          let d = 0;
          for (let h = 0; h < cols; h++) d += a[ri + h] * a[rj + h];
          for (let h = 0; h < cols; h++) a[rj + h] -= d * a[ri + h];
        }
      }
      let n = 0;
      for (let h = 0; h < cols; h++) n += a[rj + h] * a[rj + h];
      if (n > 1e-20 * before && n > 0) {
        n = Math.sqrt(n);
        for (let h = 0; h < cols; h++) a[rj + h] /= n;
        break;
      }
      for (let h = 0; h < cols; h++) a[rj + h] = rng ? rng.normal() : 0;
      if (!rng) break;
    }
  }
}

/** Eigen-decomposition of a symmetric m x m matrix by cyclic Jacobi; values descending, vectors as columns. */
export function symmetricEigen(a0: ArrayLike<number>, m: number): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(a0), v = new Float64Array(m * m);
  for (let i = 0; i < m; i++) v[i * m + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0, diag = 0;
    for (let p = 0; p < m; p++) {
      diag += a[p * m + p] ** 2;
      for (let q = p + 1; q < m; q++) off += a[p * m + q] ** 2;
    }
    if (off <= 1e-30 * diag || off === 0) break;
    for (let p = 0; p < m; p++) {
      for (let q = p + 1; q < m; q++) {
        const apq = a[p * m + q];
        if (apq === 0) continue;
        const theta = (a[q * m + q] - a[p * m + p]) / (2 * apq);
        const t = (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < m; k++) {
          const akp = a[k * m + p], akq = a[k * m + q];
          a[k * m + p] = c * akp - s * akq;
          a[k * m + q] = s * akp + c * akq;
        }
        for (let k = 0; k < m; k++) {
          const apk = a[p * m + k], aqk = a[q * m + k];
          a[p * m + k] = c * apk - s * aqk;
          a[q * m + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < m; k++) {
          const vkp = v[k * m + p], vkq = v[k * m + q];
          v[k * m + p] = c * vkp - s * vkq;
          v[k * m + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = [...Array(m).keys()].sort((x, y) => a[y * m + y] - a[x * m + x]);
  const values = new Float64Array(m), vectors = new Float64Array(m * m);
  order.forEach((j, jj) => {
    values[jj] = a[j * m + j];
    for (let k = 0; k < m; k++) vectors[k * m + jj] = v[k * m + j];
  });
  return { values, vectors };
}

/** t = v A^T (r x rows): every row of A against every row of v. */
function projectRows(a: Float64Array, rows: number, cols: number, v: Float64Array, r: number, t: Float64Array): void {
  for (let i = 0; i < rows; i++) {
    const ai = i * cols;
    for (let j = 0; j < r; j++) {
      const vj = j * cols;
      let s = 0;
      for (let h = 0; h < cols; h++) s += a[ai + h] * v[vj + h];
      t[j * rows + i] = s;
    }
  }
}

/** The top singular triplets of a matrix. */
export interface TopSvd {
  /** singular values, descending (r) */
  values: Float64Array;
  /** right singular vectors as rows (r x cols) */
  right: Float64Array;
  /** left singular vectors as rows (r x rows) */
  left: Float64Array;
}

/**
 * The top-r singular triplets of A (rows x cols) by block subspace iteration and a
 * Rayleigh–Ritz step. `start` (r x cols) warm-starts the right subspace; `iterations`
 * passes are made.
 */
export function topSvd(
  a: Float64Array,
  rows: number,
  cols: number,
  r: number,
  { start, iterations = 30, rng }: { start?: Float64Array; iterations?: number; rng: PyRandom },
): TopSvd {
  let v: Float64Array = start ? Float64Array.from(start) : Float64Array.from({ length: r * cols }, () => rng.normal());
  orthonormalRows(v, r, cols);
  const t = new Float64Array(r * rows);
  for (let it = 0; it < iterations; it++) {
    projectRows(a, rows, cols, v, r, t);
    orthonormalRows(t, r, rows);
    v = rowCombination(a, t, rows, cols, r); // t A
    orthonormalRows(v, r, cols);
  }
  // Rayleigh–Ritz: B = A V^T (rows x r) held in t as r x rows; eig of B^T B
  projectRows(a, rows, cols, v, r, t);
  const g = new Float64Array(r * r);
  for (let i = 0; i < r; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = 0; k < rows; k++) s += t[i * rows + k] * t[j * rows + k];
      g[i * r + j] = g[j * r + i] = s;
    }
  }
  const { values, vectors } = symmetricEigen(g, r);
  const sv = values.map((x) => Math.sqrt(Math.max(x, 0)));
  const right = new Float64Array(r * cols), left = new Float64Array(r * rows);
  for (let j = 0; j < r; j++) {
    for (let k = 0; k < r; k++) {
      const c = vectors[k * r + j];
      if (c === 0) continue;
      for (let h = 0; h < cols; h++) right[j * cols + h] += c * v[k * cols + h];
      for (let i = 0; i < rows; i++) left[j * rows + i] += c * t[k * rows + i];
    }
    if (sv[j] > 0) { for (let i = 0; i < rows; i++) left[j * rows + i] /= sv[j]; }
  }
  return { values: sv, right, left };
}

/** Loss, margins' gradients: g_o (H) and G (U x H) of the smooth part at (o, M). */
function smooth(
  p: PairRows,
  o: Float64Array,
  m: Float64Array,
  mu: number,
  go: Float64Array,
  gm: Float64Array,
): number {
  const H = p.dim, U = p.start.length - 1, d = p.d, start = p.start;
  gm.fill(0);
  let f = 0;
  const w = new Float64Array(H);
  for (let a = 0; a < U; a++) {
    const ma = a * H;
    for (let h = 0; h < H; h++) w[h] = o[h] + m[ma + h];
    for (let r = start[a]; r < start[a + 1]; r++) {
      const dr = r * H;
      let margin = 0;
      for (let h = 0; h < H; h++) margin += w[h] * d[dr + h];
      f += softplus(-margin);
      const s = sigmoid(-margin);
      for (let h = 0; h < H; h++) gm[ma + h] -= s * d[dr + h];
    }
  }
  for (let h = 0; h < H; h++) {
    let s = mu * o[h];
    for (let a = 0; a < U; a++) s += gm[a * H + h];
    go[h] = s;
    f += 0.5 * mu * o[h] * o[h];
  }
  return f;
}

/** Fits the shared weights alone (M = 0) by accelerated gradient descent. */
function fitShared(p: PairRows, mu: number, lipschitz: number, iterations: number): Float64Array {
  const H = p.dim, U = p.start.length - 1;
  const zero = new Float64Array(U * H), gm = new Float64Array(U * H), g = new Float64Array(H);
  let x = new Float64Array(H);
  const y = new Float64Array(H);
  let t = 1;
  const step = 1 / lipschitz;
  for (let it = 0; it < iterations; it++) {
    smooth(p, y, zero, mu, g, gm);
    const nx = new Float64Array(H);
    for (let h = 0; h < H; h++) nx[h] = y[h] - step * g[h];
    const tn = (1 + Math.sqrt(1 + 4 * t * t)) / 2;
    for (let h = 0; h < H; h++) y[h] = nx[h] + ((t - 1) / tn) * (nx[h] - x[h]);
    x = nx;
    t = tn;
  }
  return x;
}

/** The largest singular value of the signal-free gradient matrix at the shared fit (mean of 3 draws). */
function noiseLevel(p: PairRows, o: Float64Array, rng: PyRandom, r: number): number {
  const H = p.dim, U = p.start.length - 1;
  let sum = 0;
  for (let draw = 0; draw < 3; draw++) {
    const n = new Float64Array(U * H);
    for (let a = 0; a < U; a++) {
      for (let row = p.start[a]; row < p.start[a + 1]; row++) {
        let margin = 0;
        for (let h = 0; h < H; h++) margin += o[h] * p.d[row * H + h];
        const q = sigmoid(margin);
        const e = (rng.random() < 0.5 ? -1 : 1) * Math.sqrt(q * (1 - q));
        for (let h = 0; h < H; h++) n[a * H + h] += e * p.d[row * H + h];
      }
    }
    sum += topSvd(n, U, H, Math.min(r, 4), { rng }).values[0];
  }
  return sum / 3;
}

/** Fits the low-rank multi-user model (see the module comment). */
export function fitLowRank(p: PairRows, opts: LowRankOptions = {}): LowRankFit {
  const H = p.dim, U = p.start.length - 1;
  const { shrink = 0.5, mu = 1, iterations = 150, seed = 42 } = opts;
  const r = Math.max(1, Math.min(opts.rank ?? 24, U, H));
  const rng = new PyRandom(seed * 7 + 3);
  // Lipschitz constants of the smooth part: softplus'' <= 1/4; (o, M_a) enter as a sum,
  // so a separable bound doubles each block's constant
  let maxUser = 0;
  for (let a = 0; a < U; a++) maxUser = Math.max(maxUser, rowsNorm2(p, p.start[a], p.start[a + 1], rng));
  const pooled = rowsNorm2(p, 0, p.start[U], rng);
  const lo = 2 * (pooled / 4 + mu), lm = 2 * (maxUser / 4) || 1;
  const o0 = fitShared(p, mu, pooled / 4 + mu, iterations);
  const noise = noiseLevel(p, o0, rng, r);
  const lambda = shrink * noise;
  // FISTA on (o, M) from (o0, 0)
  let o = Float64Array.from(o0), m = new Float64Array(U * H);
  const yo = Float64Array.from(o0), ym = new Float64Array(U * H);
  const go = new Float64Array(H), gm = new Float64Array(U * H);
  let t = 1, warm: Float64Array | undefined, rank = 0, lastSv = new Float64Array(0);
  for (let it = 0; it < iterations; it++) {
    smooth(p, yo, ym, mu, go, gm);
    const no = new Float64Array(H), nm = new Float64Array(U * H);
    for (let h = 0; h < H; h++) no[h] = yo[h] - go[h] / lo;
    for (let i = 0; i < U * H; i++) nm[i] = ym[i] - gm[i] / lm;
    // proximal step: soft-threshold the singular values by lambda / lm
    const svd = topSvd(nm, U, H, r, { start: warm, iterations: warm ? 1 : 30, rng });
    nm.fill(0);
    rank = 0;
    for (let j = 0; j < r; j++) {
      const s = svd.values[j] - lambda / lm;
      if (s <= 0) continue;
      rank++;
      for (let a = 0; a < U; a++) {
        const c = svd.left[j * U + a] * s;
        if (c === 0) continue;
        for (let h = 0; h < H; h++) nm[a * H + h] += c * svd.right[j * H + h];
      }
    }
    warm = svd.right;
    lastSv = svd.values.map((v) => Math.max(v - lambda / lm, 0));
    const tn = (1 + Math.sqrt(1 + 4 * t * t)) / 2, beta = (t - 1) / tn;
    for (let h = 0; h < H; h++) yo[h] = no[h] + beta * (no[h] - o[h]);
    for (let i = 0; i < U * H; i++) ym[i] = nm[i] + beta * (nm[i] - m[i]);
    o = no;
    m = nm;
    t = tn;
  }
  const objective = smooth(p, o, m, mu, go, gm) + lambda * lastSv.reduce((s, v) => s + v, 0);
  if (!Number.isFinite(objective)) {
    throw new RangeError(`low-rank fit: the objective is ${objective} (non-finite pair differences?)`);
  }
  return { shared: o, deviations: m, noise, lambda, rank, kept: r, objective };
}
