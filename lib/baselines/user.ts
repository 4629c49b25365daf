/**
 * `user`: a linear reward per user, from scratch on that user's own train pairs:
 * L2-regularized logistic regression on d = x_chosen - x_rejected, solved in the
 * span of the user's pairs (v = D^T beta) by Newton's method on the Gram matrix,
 * which is scale-free after normalizing by its mean diagonal. Cost per user:
 * n^2 H for the Gram matrix, n^3 per Newton step (n = the user's train pairs).
 */
import type { UserTask } from "../data/tasks.ts";
import { type EvalOptions, type EvalResult, summarize, type UserResult } from "../eval/evaluate.ts";
import { sigmoid } from "../model/kspace.ts";

/** Regularization and iterations. */
export interface UserModelOptions {
  /** L2 strength on the normalized Gram scale @default 0.1 */
  lambda?: number;
  /** @default 20 */
  iterations?: number;
}

function diffs(embeddings: Float32Array, dim: number, t: UserTask, pos: number[]): Float64Array {
  const d = new Float64Array(pos.length * dim);
  pos.forEach((p, i) => {
    const c = t.chosen[p] * dim, r = t.rejected[p] * dim, o = i * dim;
    for (let h = 0; h < dim; h++) d[o + h] = embeddings[c + h] - embeddings[r + h];
  });
  return d;
}

function gram(a: Float64Array, na: number, b: Float64Array, nb: number, dim: number): Float64Array {
  const g = new Float64Array(na * nb);
  for (let i = 0; i < na; i++) {
    for (let j = 0; j < nb; j++) {
      let s = 0;
      const oi = i * dim, oj = j * dim;
      for (let h = 0; h < dim; h++) s += a[oi + h] * b[oj + h];
      g[i * nb + j] = s;
    }
  }
  return g;
}

/** Solves A x = b (n x n, row-major) by Gaussian elimination with partial pivoting. */
export function solve(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const m = a.slice(), x = b.slice();
  for (let c = 0; c < n; c++) {
    let piv = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r * n + c]) > Math.abs(m[piv * n + c])) piv = r;
    if (piv !== c) {
      for (let j = 0; j < n; j++) [m[c * n + j], m[piv * n + j]] = [m[piv * n + j], m[c * n + j]];
      [x[c], x[piv]] = [x[piv], x[c]];
    }
    const d = m[c * n + c] || 1e-300;
    for (let r = c + 1; r < n; r++) {
      const f = m[r * n + c] / d;
      if (f === 0) continue;
      for (let j = c; j < n; j++) m[r * n + j] -= f * m[c * n + j];
      x[r] -= f * x[c];
    }
  }
  for (let r = n - 1; r >= 0; r--) {
    let s = x[r];
    for (let j = r + 1; j < n; j++) s -= m[r * n + j] * x[j];
    x[r] = s / (m[r * n + r] || 1e-300);
  }
  return x;
}

/** Fits beta for one user's Gram matrix g (n x n): margins u = g beta. */
export function fitDual(
  g: Float64Array,
  n: number,
  { lambda = 0.1, iterations = 20 }: UserModelOptions = {},
): Float64Array {
  const beta = new Float64Array(n);
  for (let it = 0; it < iterations; it++) {
    const u = new Float64Array(n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) u[i] += g[i * n + j] * beta[j];
    // Newton system: ((1/n) diag(l'') G + lambda I) delta = (1/n) l' + lambda beta
    const a = new Float64Array(n * n), rhs = new Float64Array(n);
    let step = 0;
    for (let i = 0; i < n; i++) {
      const s = sigmoid(u[i]);
      const h = s * (1 - s) / n;
      for (let j = 0; j < n; j++) a[i * n + j] = h * g[i * n + j];
      a[i * n + i] += lambda;
      rhs[i] = -(1 - s) / n + lambda * beta[i];
    }
    const delta = solve(a, rhs, n);
    for (let i = 0; i < n; i++) {
      beta[i] -= delta[i];
      step = Math.max(step, Math.abs(delta[i]));
    }
    if (step < 1e-10) break;
  }
  return beta;
}

/** Fits and evaluates a per-user model for every user (on the first `shots` train pairs if given). */
export function evaluateUserModels(
  embeddings: Float32Array,
  dim: number,
  tasks: UserTask[],
  { shots }: Pick<EvalOptions, "shots"> = {},
  opts: UserModelOptions = {},
): EvalResult {
  const users: UserResult[] = tasks.map((t) => {
    const train = shots === undefined ? t.train : t.train.slice(0, shots);
    const n = train.length;
    const d = diffs(embeddings, dim, t, train);
    const g = gram(d, n, d, n, dim);
    let scale = 0;
    for (let i = 0; i < n; i++) scale += g[i * n + i];
    scale = scale / n || 1;
    for (let i = 0; i < g.length; i++) g[i] /= scale;
    const beta = fitDual(g, n, opts);
    const acc = (pos: number[]) => {
      if (pos.length === 0) return NaN;
      const cross = gram(diffs(embeddings, dim, t, pos), pos.length, d, n, dim);
      let correct = 0;
      for (let i = 0; i < pos.length; i++) {
        let m = 0;
        for (let j = 0; j < n; j++) m += cross[i * n + j] * beta[j];
        if (m > 0) correct++;
      }
      return correct / pos.length;
    };
    const res: UserResult = { id: t.id, group: t.group, nTrain: n, nTest: t.test.length, accuracy: acc(t.test) };
    if (t.val.length) res.valAccuracy = acc(t.val);
    return res;
  });
  return summarize(users);
}
