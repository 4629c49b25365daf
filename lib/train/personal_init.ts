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
import * as tf from "@tensorflow/tfjs-core";
import { fitLowRank, orthonormalRows, topSvd } from "./lowrank.ts";

/** The smallest variance a base's prior assumes (unit-z coordinates). */
const MIN_VARIANCE = 1e-4;

/** The most dimensions the low-rank fit works in. */
export const MAX_FIT_DIM = 256;

/**
 * The space the low-rank fit works in when H > P (MAX_FIT_DIM by default): P orthonormal
 * directions (rows of Q) spanned by sums of the users' pair differences, which is where
 * the users' gradients live. With fewer users than that, each user's pairs are cut into
 * chunks (as many chunks in all as the space has directions, at least one per user) and
 * the chunk sums span it; a user's own sum is then in it exactly. With more users, it is
 * the top singular subspace of the users' sums (a randomized range finder with one power
 * step). This keeps the fit's size at 256 whatever H is, so a fit over 4096-wide
 * embeddings neither takes minutes nor separates the pooled pairs. Null when H is no
 * larger (no reduction).
 */
function userSpace(d: Float64Array, start: Int32Array, H: number, P: number, seed: number): Float64Array | null {
  const U = start.length - 1, N = start[U];
  if (H <= P) return null;
  const rng = new PyRandom(seed * 13 + 11);
  // rows to span: chunk sums (U < P) or user sums
  const cuts: [number, number][] = [];
  if (U < P) {
    for (let a = 0; a < U; a++) {
      const n = start[a + 1] - start[a];
      const chunks = Math.max(1, Math.min(n, Math.round((P * n) / N)));
      for (let c = 0; c < chunks; c++) {
        cuts.push([start[a] + Math.floor((c * n) / chunks), start[a] + Math.floor(((c + 1) * n) / chunks)]);
      }
    }
  } else {
    for (let a = 0; a < U; a++) cuts.push([start[a], start[a + 1]]);
  }
  const R = cuts.length, rows = new Float32Array(R * H);
  cuts.forEach(([r0, r1], j) => {
    for (let r = r0; r < r1; r++) for (let i = 0; i < H; i++) rows[j * H + i] += d[r * H + i];
  });
  let q: Float64Array;
  if (R <= P) {
    q = Float64Array.from(rows);
  } else {
    // Y = rows^T (rows (rows^T Omega)): the top-P row space, one power step. Every product
    // is a plain one (tfjs' wasm matMul with a transposed operand is ~15x slower)
    const omega = Float32Array.from({ length: R * P }, () => rng.normal());
    const y = tf.tidy(() => {
      const m = tf.tensor2d(rows, [R, H]), mt = tf.tensor2d(Float32Array.from(transpose(rows, R, H)), [H, R]);
      return tf.matMul(mt, tf.matMul(m, tf.matMul(mt, tf.tensor2d(omega, [R, P])))); // H x P
    });
    q = transpose(y.dataSync(), H, P);
    y.dispose();
  }
  const n = Math.min(R, P);
  orthonormalRows(q, n, H, rng);
  return q.subarray(0, n * H);
}

/** The transpose of a row-major r x c matrix (as float64). */
function transpose(a: ArrayLike<number>, r: number, c: number): Float64Array {
  const out = new Float64Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = a[i * c + j];
  return out;
}

/** A (n x h) times Q^T (Q: p x h): the rows of A in the space's coordinates (one float32 product). */
function toSpace(a: Float64Array, n: number, h: number, q: Float64Array, p: number): Float64Array {
  const out = tf.tidy(() =>
    tf.matMul(tf.tensor2d(Float32Array.from(a), [n, h]), tf.tensor2d(Float32Array.from(transpose(q, p, h)), [h, p]))
  );
  const v = Float64Array.from(out.dataSync());
  out.dispose();
  return v;
}

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
  /** the most dimensions the low-rank fit works in (wider embeddings are reduced first) @default 256 */
  fitDim?: number;
}

/** Builds mrm-p's starting parameters from the seen users' train pairs. */
export function initPersonal(
  embeddings: Float32Array,
  dim: number,
  seen: UserTask[],
  { k, ridge, shrink, seed, fitDim = MAX_FIT_DIM }: PersonalInitOptions,
): Promise<MrmParams> {
  if (k > dim) throw new ConfigError(`--hidden_layers: mrm-p's K=${k} exceeds the embedding dimension H=${dim}`);
  if (!(ridge > 0)) throw new ConfigError(`--ridge: expected a positive number, got ${ridge}`);
  if (!(shrink >= 0)) throw new ConfigError(`--shrink: expected a number >= 0, got ${shrink}`);
  const users = seen.filter((t) => t.train.length > 0);
  if (users.length === 0) throw new ConfigError("mrm-p needs seen users with train pairs to start from");
  const U = users.length;
  if (dim > fitDim && k > fitDim) {
    throw new ConfigError(`--hidden_layers: mrm-p's K=${k} exceeds the ${fitDim} dimensions its start is fitted in`);
  }
  // pair differences, scaled so a coordinate has unit RMS (the fit is then scale-free)
  const start = new Int32Array(U + 1);
  users.forEach((t, a) => (start[a + 1] = start[a] + t.train.length));
  const N = start[U];
  const d = new Float64Array(N * dim);
  let row = 0, sq = 0;
  for (const t of users) {
    for (const e of t.train) {
      const c = t.chosen[e] * dim, r = t.rejected[e] * dim, o = row * dim;
      for (let i = 0; i < dim; i++) {
        const v = embeddings[c + i] - embeddings[r + i];
        d[o + i] = v;
        sq += v * v;
      }
      row++;
    }
  }
  const unit = Math.sqrt(sq / (N * dim)) || 1;
  for (let i = 0; i < d.length; i++) d[i] /= unit;
  // work in the users' space when it is smaller than H (see userSpace); map the bases back at the end
  const reduced = userSpace(d, start, dim, fitDim, seed);
  const space = reduced && reduced.length / dim >= k ? reduced : null;
  const H = space ? space.length / dim : dim;
  const dd = space ? toSpace(d, N, dim, space, H) : d;
  const fit = fitLowRank({ d: dd, start, dim: H }, { shrink, seed });
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
      for (let i = 0; i < H; i++) z += basis[j * H + i] * dd[p * H + i];
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
  // back to embedding coordinates: a base's row is basis . Q when the fit ran in the users' space
  const full = space ? new Float64Array(k * dim) : basis;
  if (space) {
    for (let j = 0; j < k; j++) {
      for (let c = 0; c < H; c++) {
        const b = basis[j * H + c];
        for (let i = 0; i < dim; i++) full[j * dim + i] += b * space[c * dim + i];
      }
    }
  }
  const weight = new Float32Array(k * dim);
  for (let j = 0; j < k; j++) {
    for (let i = 0; i < dim; i++) weight[j * dim + i] = full[j * dim + i] / (unit * INPUT_SCALE * scale[j]);
  }
  return Promise.resolve({
    dim,
    layers: [{ out: k, in: dim, weight }],
    sharedWeight: Float32Array.from(w0),
    priorLogPrecision: Float32Array.from(variance, (v) => Math.log(ridge / Math.max(v, MIN_VARIANCE))),
  });
}
