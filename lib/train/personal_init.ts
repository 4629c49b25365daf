/**
 * The starting point of mrm-p meta-training (docs/method.md §8), computed from the seen
 * users' train pairs only, as an empirical-Bayes reading of a low-rank multi-user fit:
 *
 * - every seen user's Bradley–Terry weights over the pair differences are fitted jointly,
 *   as shared weights plus a deviation, with the users' deviations kept low-rank by a
 *   nuclear-norm penalty set relative to the noise (`fitLowRank`, strength `shrink`);
 * - base functions: the first is the mean user's direction; the other K-1 are the top
 *   right singular vectors of the users' weights around that mean (with the first base
 *   projected out), i.e. the directions users differ in. Each base is scaled so its pair
 *   feature z has unit standard deviation over the seen pairs;
 * - prior mean w0: the mean of the seen users' coordinates in these bases;
 * - prior precision of base k: `ridge` / (the variance of the seen users' k-th
 *   coordinate), so a direction users spread along gets a weak prior and one they agree
 *   on a strong one.
 */
import { PyRandom } from "../data/rng.ts";
import type { UserTask } from "../data/tasks.ts";
import { ConfigError } from "../errors.ts";
import { INPUT_SCALE, type MrmParams } from "../model/params.ts";
import { fitLowRank, topSvd } from "./lowrank.ts";

/** The smallest variance a base's prior assumes (unit-z coordinates). */
const MIN_VARIANCE = 1e-4;

/** Settings of the mrm-p starting point. */
export interface PersonalInitOptions {
  /** number of base functions K */
  k: number;
  /** multiplier of the empirical-Bayes prior precisions (1: as estimated) */
  ridge: number;
  /** nuclear-norm strength of the low-rank fit, as a multiple of the noise level */
  shrink: number;
  /** seed of the noise draws and subspace iterations */
  seed: number;
}

/** Builds mrm-p's starting parameters from the seen users' train pairs. */
export function initPersonal(
  embeddings: Float32Array,
  dim: number,
  seen: UserTask[],
  { k, ridge, shrink, seed }: PersonalInitOptions,
): Promise<MrmParams> {
  if (k > dim) throw new ConfigError(`--hidden_layers: mrm-p's K=${k} exceeds the embedding dimension H=${dim}`);
  if (!(ridge > 0)) throw new ConfigError(`--ridge: expected a positive number, got ${ridge}`);
  if (!(shrink >= 0)) throw new ConfigError(`--shrink: expected a number >= 0, got ${shrink}`);
  const users = seen.filter((t) => t.train.length > 0);
  if (users.length === 0) throw new ConfigError("mrm-p needs seen users with train pairs to start from");
  const U = users.length, H = dim;
  // pair differences, scaled so a coordinate has unit RMS (the fit is then scale-free)
  const start = new Int32Array(U + 1);
  users.forEach((t, a) => (start[a + 1] = start[a] + t.train.length));
  const N = start[U];
  const d = new Float64Array(N * H);
  let row = 0, sq = 0;
  for (const t of users) {
    for (const e of t.train) {
      const c = t.chosen[e] * H, r = t.rejected[e] * H, o = row * H;
      for (let i = 0; i < H; i++) {
        const v = embeddings[c + i] - embeddings[r + i];
        d[o + i] = v;
        sq += v * v;
      }
      row++;
    }
  }
  const unit = Math.sqrt(sq / (N * H)) || 1;
  for (let i = 0; i < d.length; i++) d[i] /= unit;
  const fit = fitLowRank({ d, start, dim: H }, { shrink, seed });
  // users' weights W_a = o + M_a, their mean, and the spread around it
  const w = new Float64Array(U * H), mean = new Float64Array(H);
  for (let a = 0; a < U; a++) {
    for (let i = 0; i < H; i++) {
      const v = fit.shared[i] + fit.deviations[a * H + i];
      w[a * H + i] = v;
      mean[i] += v / U;
    }
  }
  const basis = new Float64Array(k * H);
  const mnorm = Math.hypot(...mean) || 1;
  for (let i = 0; i < H; i++) basis[i] = mean[i] / mnorm;
  if (k > 1) {
    const spread = new Float64Array(U * H);
    for (let a = 0; a < U; a++) {
      let along = 0;
      for (let i = 0; i < H; i++) along += (w[a * H + i] - mean[i]) * basis[i];
      for (let i = 0; i < H; i++) spread[a * H + i] = w[a * H + i] - mean[i] - along * basis[i];
    }
    const top = topSvd(spread, U, H, Math.min(k - 1, U, H), { rng: new PyRandom(seed * 31 + 5) });
    basis.set(top.right, H);
  }
  orthonormalRows(basis, k, H, new PyRandom(seed * 17 + 1));
  // unit-z scales and the users' coordinates in model units
  const scale = new Float64Array(k);
  for (let j = 0; j < k; j++) {
    let s = 0;
    for (let p = 0; p < N; p++) {
      let z = 0;
      for (let i = 0; i < H; i++) z += basis[j * H + i] * d[p * H + i];
      s += z * z;
    }
    scale[j] = Math.sqrt(s / N) || 1;
  }
  const w0 = new Float64Array(k), variance = new Float64Array(k);
  const coords = new Float64Array(U * k);
  for (let a = 0; a < U; a++) {
    for (let j = 0; j < k; j++) {
      let u = 0;
      for (let i = 0; i < H; i++) u += basis[j * H + i] * w[a * H + i];
      coords[a * k + j] = u * scale[j];
      w0[j] += u * scale[j] / U;
    }
  }
  for (let a = 0; a < U; a++) for (let j = 0; j < k; j++) variance[j] += (coords[a * k + j] - w0[j]) ** 2 / U;
  const weight = new Float32Array(k * H);
  for (let j = 0; j < k; j++) {
    for (let i = 0; i < H; i++) weight[j * H + i] = basis[j * H + i] / (unit * INPUT_SCALE * scale[j]);
  }
  return Promise.resolve({
    dim,
    layers: [{ out: k, in: dim, weight }],
    sharedWeight: Float32Array.from(w0),
    priorLogPrecision: Float32Array.from(variance, (v) => Math.log(ridge / Math.max(v, MIN_VARIANCE))),
  });
}

/** Orthonormalises the rows of A (rows x cols) in place; a dependent row restarts from noise. */
function orthonormalRows(a: Float64Array, rows: number, cols: number, rng: PyRandom): void {
  for (let j = 0; j < rows; j++) {
    for (let attempt = 0; attempt < 5; attempt++) {
      for (let pass = 0; pass < 2; pass++) {
        for (let i = 0; i < j; i++) {
          let dot = 0;
          for (let h = 0; h < cols; h++) dot += a[i * cols + h] * a[j * cols + h];
          for (let h = 0; h < cols; h++) a[j * cols + h] -= dot * a[i * cols + h];
        }
      }
      let n = 0;
      for (let h = 0; h < cols; h++) n += a[j * cols + h] ** 2;
      if (n > 1e-20) {
        n = Math.sqrt(n);
        for (let h = 0; h < cols; h++) a[j * cols + h] /= n;
        break;
      }
      for (let h = 0; h < cols; h++) a[j * cols + h] = rng.normal();
    }
  }
}
