/**
 * The per-user math of `mrm-p`, the personalising variant (docs/method.md §8), in the
 * K-dimensional space of base-function outputs z = phi(chosen) - phi(rejected).
 *
 * A user's reward is w . phi(x) with signed weights w. Adaptation is the exact MAP
 * fit of a Bradley–Terry model under a Gaussian prior centred on the meta-learned
 * w0 with meta-learned per-base precisions lambda_k = exp(rho_k):
 *
 *   w* = argmin_w  sum_i softplus(-w . z_i) + 1/2 sum_k lambda_k (w_k - w0_k)^2
 *
 * solved by damped Newton steps (the Hessian is K x K). The support loss is a sum, not
 * a mean, so the prior weighs less as a user brings more pairs. The meta-gradient of
 * the query loss goes through w* by implicit differentiation (w* is a stationary
 * point), which is exact at the optimum; tests compare it with float64 finite
 * differences of the whole fit.
 */
import { sigmoid, softplus } from "./kspace.ts";

/** Newton iterations at most, and the gradient norm that ends them. */
const MAX_NEWTON = 100;
const GRAD_TOL = 1e-10;

/** The prior: its mean w0 and log precisions rho (K each). */
export interface Prior {
  /** prior mean of the user's weights */
  w0: ArrayLike<number>;
  /** log precision of the prior, per base */
  rho: ArrayLike<number>;
}

/** Penalised support loss F(w). */
export function mapLoss(w: ArrayLike<number>, prior: Prior, z: Float64Array, n: number): number {
  const K = w.length;
  let f = 0;
  for (let p = 0; p < n; p++) {
    let m = 0;
    for (let k = 0; k < K; k++) m += w[k] * z[p * K + k];
    f += softplus(-m);
  }
  for (let k = 0; k < K; k++) f += 0.5 * Math.exp(prior.rho[k]) * (w[k] - prior.w0[k]) ** 2;
  return f;
}

/** In-place Cholesky factor of an SPD K x K matrix (lower triangle); false when not SPD. */
function cholesky(a: Float64Array, K: number): boolean {
  for (let j = 0; j < K; j++) {
    let d = a[j * K + j];
    for (let t = 0; t < j; t++) d -= a[j * K + t] ** 2;
    if (!(d > 0)) return false;
    const l = Math.sqrt(d);
    a[j * K + j] = l;
    for (let i = j + 1; i < K; i++) {
      let s = a[i * K + j];
      for (let t = 0; t < j; t++) s -= a[i * K + t] * a[j * K + t];
      a[i * K + j] = s / l;
    }
  }
  return true;
}

/** Solves L L^T x = b with the factor from cholesky(). */
function cholSolve(l: Float64Array, K: number, b: ArrayLike<number>): Float64Array {
  const y = new Float64Array(K);
  for (let i = 0; i < K; i++) {
    let s = b[i];
    for (let t = 0; t < i; t++) s -= l[i * K + t] * y[t];
    y[i] = s / l[i * K + i];
  }
  for (let i = K - 1; i >= 0; i--) {
    let s = y[i];
    for (let t = i + 1; t < K; t++) s -= l[t * K + i] * y[t];
    y[i] = s / l[i * K + i];
  }
  return y;
}

/** Gradient and Hessian of F at w. */
function gradHess(w: Float64Array, prior: Prior, z: Float64Array, n: number): { g: Float64Array; h: Float64Array } {
  const K = w.length;
  const g = new Float64Array(K), h = new Float64Array(K * K);
  for (let p = 0; p < n; p++) {
    let m = 0;
    for (let k = 0; k < K; k++) m += w[k] * z[p * K + k];
    const s = sigmoid(-m), c = s * (1 - s);
    for (let k = 0; k < K; k++) {
      const zk = z[p * K + k];
      g[k] -= s * zk;
      for (let j = 0; j <= k; j++) h[k * K + j] += c * zk * z[p * K + j];
    }
  }
  for (let k = 0; k < K; k++) {
    const lam = Math.exp(prior.rho[k]);
    g[k] += lam * (w[k] - prior.w0[k]);
    h[k * K + k] += lam;
    for (let j = 0; j < k; j++) h[j * K + k] = h[k * K + j];
  }
  return { g, h };
}

/** The MAP fit w* and the Cholesky factor of the Hessian there. */
export interface Fit {
  /** the MAP weights */
  w: Float64Array;
  /** Cholesky factor (lower) of the Hessian of F at w */
  chol: Float64Array;
  /** Newton iterations taken */
  iterations: number;
}

/**
 * Fits a user's weights: damped Newton from w0 with an Armijo backtracking line search.
 * F is strictly convex (lambda > 0), so this converges; it stops when the gradient's
 * largest entry is below 1e-10 or after 100 iterations.
 */
export function fitUser(prior: Prior, z: Float64Array, n: number): Fit {
  const K = prior.w0.length;
  const w = Float64Array.from(prior.w0);
  let f = mapLoss(w, prior, z, n);
  for (let it = 0; it < MAX_NEWTON; it++) {
    const { g, h } = gradHess(w, prior, z, n);
    let gmax = 0;
    for (let k = 0; k < K; k++) gmax = Math.max(gmax, Math.abs(g[k]));
    if (!cholesky(h, K)) throw new RangeError("mrm-p: the MAP Hessian is not positive definite (non-finite input?)");
    if (gmax < GRAD_TOL || !Number.isFinite(gmax)) return { w, chol: h, iterations: it };
    const d = cholSolve(h, K, g);
    let slope = 0;
    for (let k = 0; k < K; k++) slope += g[k] * d[k];
    let step = 1;
    const trial = new Float64Array(K);
    if (slope < 1e-8) {
      // the Newton decrement is tiny: F changes below float64 resolution, so a line
      // search cannot judge the step; in this quadratic region the full step is right
      for (let k = 0; k < K; k++) w[k] -= d[k];
      f = mapLoss(w, prior, z, n);
      continue;
    }
    for (let ls = 0; ls < 50; ls++) {
      for (let k = 0; k < K; k++) trial[k] = w[k] - step * d[k];
      const ft = mapLoss(trial, prior, z, n);
      if (ft <= f - 1e-4 * step * slope || ft <= f) {
        f = ft;
        break;
      }
      step *= 0.5;
    }
    if (step < 2 ** -49) break; // no decrease possible at float64 precision: this is the optimum
    w.set(trial);
  }
  const { h } = gradHess(w, prior, z, n);
  cholesky(h, K);
  return { w, chol: h, iterations: MAX_NEWTON };
}

/** What one user contributes to the mrm-p meta-gradient. */
export interface PersonalGrad {
  /** mean query loss at the user's fit */
  loss: number;
  /** dLoss/dw0 */
  dW0: Float64Array;
  /** dLoss/drho */
  dRho: Float64Array;
  /** dLoss/dz for each support row (n_s x K) */
  dZs: Float64Array;
  /** dLoss/dz for each query row (n_q x K) */
  dZq: Float64Array;
}

/**
 * The query loss (mean BT loss) at the support fit w*, and its gradient w.r.t. the
 * prior and every z, by implicit differentiation: with g(w) = dF/dw and v = H^-1 dL/dw,
 * dL/dtheta = dL/dtheta|_w - v^T dg/dtheta.
 */
export function personalGrad(prior: Prior, zs: Float64Array, ns: number, zq: Float64Array, nq: number): PersonalGrad {
  const K = prior.w0.length;
  const { w, chol } = fitUser(prior, zs, ns);
  const dZq = new Float64Array(nq * K), gw = new Float64Array(K);
  let loss = 0;
  for (let p = 0; p < nq; p++) {
    let m = 0;
    for (let k = 0; k < K; k++) m += w[k] * zq[p * K + k];
    loss += softplus(-m);
    const s = sigmoid(-m) / nq;
    for (let k = 0; k < K; k++) {
      gw[k] -= s * zq[p * K + k];
      dZq[p * K + k] = -s * w[k];
    }
  }
  loss /= nq;
  const v = cholSolve(chol, K, gw);
  const dW0 = new Float64Array(K), dRho = new Float64Array(K);
  for (let k = 0; k < K; k++) {
    const lam = Math.exp(prior.rho[k]);
    dW0[k] = lam * v[k];
    dRho[k] = -v[k] * lam * (w[k] - prior.w0[k]);
  }
  const dZs = new Float64Array(ns * K);
  for (let p = 0; p < ns; p++) {
    let m = 0, vz = 0;
    for (let k = 0; k < K; k++) {
      m += w[k] * zs[p * K + k];
      vz += v[k] * zs[p * K + k];
    }
    const sn = sigmoid(-m), c = sn * (1 - sn) * vz;
    for (let k = 0; k < K; k++) dZs[p * K + k] = sn * v[k] - c * w[k];
  }
  return { loss, dW0, dRho, dZs, dZq };
}
