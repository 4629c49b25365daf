/**
 * The starting point of mrm-p meta-training (docs/method.md §8), computed from the seen
 * users' train pairs only:
 *
 * - base functions: the first is the shared Bradley–Terry direction (the `bt` baseline
 *   trained on the seen pairs), so mrm-p starts from the shared model; the other K-1 are
 *   the top right singular vectors of the matrix whose rows are the seen users' mean
 *   pair differences mean(x_chosen - x_rejected), with the shared direction projected
 *   out. Under a Bradley–Terry user the mean difference leans along that user's reward
 *   direction, so these vectors span the directions users disagree on. Rows are weighted
 *   by sqrt(pairs), which makes their noise equal. Each base is scaled so its pair
 *   feature z has unit standard deviation over the seen pairs;
 * - prior mean w0: the pooled fit over every seen pair (a shared BT model in K-space);
 * - prior log precision: log(ridge) for every base.
 */
import { PyRandom } from "../data/rng.ts";
import type { UserTask } from "../data/tasks.ts";
import { ConfigError } from "../errors.ts";
import { trainLinear } from "../baselines/linear.ts";
import { INPUT_SCALE, type MrmParams } from "../model/params.ts";
import { fitUser } from "../model/personal.ts";

/** Orthonormalises the columns of A (H x K, row-major) in place (modified Gram–Schmidt). */
function orthonormalize(a: Float64Array, h: number, k: number, rng: PyRandom): void {
  for (let j = 0; j < k; j++) {
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i < j; i++) {
        let d = 0;
        for (let r = 0; r < h; r++) d += a[r * k + i] * a[r * k + j];
        for (let r = 0; r < h; r++) a[r * k + j] -= d * a[r * k + i];
      }
    }
    let n = 0;
    for (let r = 0; r < h; r++) n += a[r * k + j] ** 2;
    if (n < 1e-24) {
      // a rank-deficient column: restart it from noise and orthogonalise again
      for (let r = 0; r < h; r++) a[r * k + j] = rng.normal();
      j--;
      continue;
    }
    n = Math.sqrt(n);
    for (let r = 0; r < h; r++) a[r * k + j] /= n;
  }
}

/** The top-k right singular vectors of M (u x h) as an h x k matrix, by subspace iteration. */
export function topRightSingular(m: Float64Array, u: number, h: number, k: number, seed: number): Float64Array {
  const rng = new PyRandom(seed * 31 + 5);
  const v = new Float64Array(h * k);
  for (let i = 0; i < v.length; i++) v[i] = rng.normal();
  orthonormalize(v, h, k, rng);
  const t = new Float64Array(u * k);
  for (let it = 0; it < 30; it++) {
    // t = M v (u x k), v = M^T t (h x k)
    t.fill(0);
    for (let a = 0; a < u; a++) {
      for (let r = 0; r < h; r++) {
        const x = m[a * h + r];
        if (x === 0) continue;
        for (let j = 0; j < k; j++) t[a * k + j] += x * v[r * k + j];
      }
    }
    v.fill(0);
    for (let a = 0; a < u; a++) {
      for (let r = 0; r < h; r++) {
        const x = m[a * h + r];
        if (x === 0) continue;
        for (let j = 0; j < k; j++) v[r * k + j] += x * t[a * k + j];
      }
    }
    orthonormalize(v, h, k, rng);
  }
  // order by singular value (Rayleigh quotients), largest first
  const sv = Array.from({ length: k }, (_, j) => {
    let s = 0;
    for (let a = 0; a < u; a++) {
      let d = 0;
      for (let r = 0; r < h; r++) d += m[a * h + r] * v[r * k + j];
      s += d * d;
    }
    return { j, s };
  }).sort((x, y) => y.s - x.s);
  const out = new Float64Array(h * k);
  sv.forEach(({ j }, jj) => {
    for (let r = 0; r < h; r++) out[r * k + jj] = v[r * k + j];
  });
  return out;
}

/** Settings of the mrm-p starting point. */
export interface PersonalInitOptions {
  /** number of base functions K */
  k: number;
  /** initial prior precision of every base */
  ridge: number;
  /** seed of the random start */
  seed: number;
}

/** Builds mrm-p's starting parameters from the seen users' train pairs. */
export async function initPersonal(
  embeddings: Float32Array,
  dim: number,
  seen: UserTask[],
  { k, ridge, seed }: PersonalInitOptions,
): Promise<MrmParams> {
  if (k > dim) throw new ConfigError(`--hidden_layers: mrm-p's K=${k} exceeds the embedding dimension H=${dim}`);
  const users = seen.filter((t) => t.train.length > 0);
  if (users.length === 0) throw new ConfigError("mrm-p needs seen users with train pairs to start from");
  const shared = (await trainLinear(embeddings, dim, users, { k: 1, personalized: false, seed })).basis.weight;
  const s1 = Float64Array.from(shared);
  const n1 = Math.hypot(...s1) || 1;
  for (let i = 0; i < dim; i++) s1[i] /= n1;
  const m = new Float64Array(users.length * dim);
  users.forEach((t, a) => {
    const row = m.subarray(a * dim, (a + 1) * dim);
    for (const p of t.train) {
      const c = t.chosen[p] * dim, r = t.rejected[p] * dim;
      for (let i = 0; i < dim; i++) row[i] += embeddings[c + i] - embeddings[r + i];
    }
    let along = 0;
    for (let i = 0; i < dim; i++) along += row[i] * s1[i];
    const w = INPUT_SCALE / Math.sqrt(t.train.length);
    for (let i = 0; i < dim; i++) row[i] = (row[i] - along * s1[i]) * w;
  });
  const rest = k > 1 ? topRightSingular(m, users.length, dim, k - 1, seed) : new Float64Array(0);
  const v = new Float64Array(dim * k);
  for (let i = 0; i < dim; i++) {
    v[i * k] = s1[i];
    for (let j = 1; j < k; j++) v[i * k + j] = rest[i * (k - 1) + j - 1];
  }
  // pair features of every seen train pair in this basis, for the scales and the pooled fit
  const nPairs = users.reduce((s, t) => s + t.train.length, 0);
  const z = new Float64Array(nPairs * k);
  let p = 0;
  for (const t of users) {
    for (const e of t.train) {
      const c = t.chosen[e] * dim, r = t.rejected[e] * dim;
      for (let i = 0; i < dim; i++) {
        const d = (embeddings[c + i] - embeddings[r + i]) * INPUT_SCALE;
        if (d === 0) continue;
        for (let j = 0; j < k; j++) z[p * k + j] += d * v[i * k + j];
      }
      p++;
    }
  }
  const scale = new Float64Array(k);
  for (let j = 0; j < k; j++) {
    let s = 0;
    for (let q = 0; q < nPairs; q++) s += z[q * k + j] ** 2;
    scale[j] = Math.sqrt(s / nPairs) || 1;
    for (let q = 0; q < nPairs; q++) z[q * k + j] /= scale[j];
  }
  const weight = new Float32Array(k * dim);
  for (let j = 0; j < k; j++) for (let i = 0; i < dim; i++) weight[j * dim + i] = v[i * k + j] / scale[j];
  // pooled fit: a weak prior (precision 1) at zero over all seen pairs
  const pooled = fitUser({ w0: new Float64Array(k), rho: new Float64Array(k) }, z, nPairs).w;
  return {
    dim,
    layers: [{ out: k, in: dim, weight }],
    sharedWeight: Float32Array.from(pooled),
    priorLogPrecision: new Float32Array(k).fill(Math.log(ridge)),
  };
}
