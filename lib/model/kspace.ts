/**
 * The per-user math of MRM in the K-dimensional space of base-function outputs.
 *
 * Base functions are linear, so a pair enters the BT loss only through
 * z = phi(chosen) - phi(rejected) (K numbers). Everything a user does — the inner
 * Adam steps on theta, the query loss and its exact second-order gradient — is
 * computed here in float64 with hand-derived reverse mode (tfjs's nested tf.grad
 * is wrong for softmax/sigmoid; see docs/design.md). Tests compare it with float64
 * finite differences.
 */

/** Adam hyperparameters of the inner loop (fresh state per user). */
export interface InnerOptions {
  /** Adam learning rate */
  lr: number;
  /** Adam steps */
  steps: number;
  /** @default 0.9 */
  /** Adam beta1 @default 0.9 */
  beta1?: number;
  /** @default 0.999 */
  /** Adam beta2 @default 0.999 */
  beta2?: number;
  /** @default 1e-8 */
  /** Adam epsilon @default 1e-8 */
  eps?: number;
}

/** Numerically stable log(1 + e^x). */
export function softplus(x: number): number {
  return x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x));
}

/** Numerically stable logistic function. */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

/** softmax(theta) into `out`. */
export function softmax(theta: ArrayLike<number>, out: Float64Array = new Float64Array(theta.length)): Float64Array {
  let m = -Infinity;
  for (let k = 0; k < theta.length; k++) m = Math.max(m, theta[k]);
  let s = 0;
  for (let k = 0; k < theta.length; k++) s += out[k] = Math.exp(theta[k] - m);
  for (let k = 0; k < theta.length; k++) out[k] /= s;
  return out;
}

/** out = J v with J = diag(w) - w w^T, the (symmetric) softmax Jacobian. */
function jvp(w: Float64Array, v: ArrayLike<number>, out: Float64Array): Float64Array {
  let wv = 0;
  for (let k = 0; k < w.length; k++) wv += w[k] * v[k];
  for (let k = 0; k < w.length; k++) out[k] = w[k] * (v[k] - wv);
  return out;
}

/** BT loss -mean log sigmoid(w . z_p) over the rows of Z (n x K). */
export function btLoss(theta: ArrayLike<number>, z: Float64Array, n: number): number {
  const K = theta.length, w = softmax(theta);
  let l = 0;
  for (let p = 0; p < n; p++) {
    let m = 0;
    for (let k = 0; k < K; k++) m += w[k] * z[p * K + k];
    l += softplus(-m);
  }
  return l / n;
}

/** Gradient of the BT loss w.r.t. theta, into g. */
function btGrad(w: Float64Array, z: Float64Array, n: number, g: Float64Array, u: Float64Array): void {
  const K = w.length;
  u.fill(0);
  for (let p = 0; p < n; p++) {
    let m = 0;
    for (let k = 0; k < K; k++) m += w[k] * z[p * K + k];
    const s = -sigmoid(-m) / n;
    for (let k = 0; k < K; k++) u[k] += s * z[p * K + k];
  }
  jvp(w, u, g);
}

/** One Adam step (PyTorch's formula) on theta, in place; t is 1-based. */
function adamStep(
  theta: Float64Array,
  g: Float64Array,
  m: Float64Array,
  v: Float64Array,
  t: number,
  lr: number,
  b1: number,
  b2: number,
  eps: number,
): void {
  const bc1 = 1 - b1 ** t, bc2 = 1 - b2 ** t;
  for (let k = 0; k < theta.length; k++) {
    m[k] = b1 * m[k] + (1 - b1) * g[k];
    v[k] = b2 * v[k] + (1 - b2) * g[k] * g[k];
    theta[k] -= lr * (m[k] / bc1) / (Math.sqrt(v[k] / bc2) + eps);
  }
}

/**
 * Adapts theta with a fresh Adam on the BT loss of Z (n x K): evaluation and
 * inference. Returns the adapted theta (float64).
 */
export function adaptTheta(theta: ArrayLike<number>, z: Float64Array, n: number, opts: InnerOptions): Float64Array {
  const { lr, steps, beta1 = 0.9, beta2 = 0.999, eps = 1e-8 } = opts;
  const K = theta.length;
  const th = Float64Array.from(theta);
  const m = new Float64Array(K), v = new Float64Array(K), g = new Float64Array(K), u = new Float64Array(K);
  const w = new Float64Array(K);
  for (let t = 1; t <= steps; t++) {
    softmax(th, w);
    btGrad(w, z, n, g, u);
    adamStep(th, g, m, v, t, lr, beta1, beta2, eps);
  }
  return th;
}

/** What one user contributes to the meta-gradient. */
export interface TaskGrad {
  /** query loss after adaptation */
  loss: number;
  /** dLoss/dtheta (initial theta) */
  dTheta: Float64Array;
  /** dLoss/dz for each support row (n_s x K); zeros when first order */
  dZs: Float64Array;
  /** dLoss/dz for each query row (n_q x K) */
  dZq: Float64Array;
}

/**
 * The query loss after `steps` differentiable inner Adam steps on the support
 * loss, and its gradient w.r.t. the initial theta and every z. Second order
 * differentiates through the Adam update (like `higher`); first order treats the
 * adapted theta as theta plus a constant.
 */
export function taskGrad(
  theta: ArrayLike<number>,
  zs: Float64Array,
  ns: number,
  zq: Float64Array,
  nq: number,
  opts: InnerOptions & { firstOrder?: boolean },
): TaskGrad {
  const { lr, steps, beta1: b1 = 0.9, beta2: b2 = 0.999, eps = 1e-8, firstOrder = false } = opts;
  const K = theta.length;
  // Forward, keeping every step's theta, gradient and moments.
  const thetas: Float64Array[] = [Float64Array.from(theta)];
  const grads: Float64Array[] = [], ms: Float64Array[] = [], vs: Float64Array[] = [];
  let m = new Float64Array(K), v = new Float64Array(K);
  const u = new Float64Array(K), w = new Float64Array(K);
  for (let t = 1; t <= steps; t++) {
    const th = thetas[t - 1].slice();
    const g = new Float64Array(K);
    softmax(th, w);
    btGrad(w, zs, ns, g, u);
    m = m.slice();
    v = v.slice();
    adamStep(th, g, m, v, t, lr, b1, b2, eps);
    thetas.push(th);
    grads.push(g);
    ms.push(m);
    vs.push(v);
  }
  // Query loss and its adjoints.
  const wT = softmax(thetas[steps]);
  const dZq = new Float64Array(nq * K);
  const wBar = new Float64Array(K);
  let loss = 0;
  for (let p = 0; p < nq; p++) {
    let mp = 0;
    for (let k = 0; k < K; k++) mp += wT[k] * zq[p * K + k];
    loss += softplus(-mp);
    const dm = -sigmoid(-mp) / nq;
    for (let k = 0; k < K; k++) {
      wBar[k] += dm * zq[p * K + k];
      dZq[p * K + k] = dm * wT[k];
    }
  }
  loss /= nq;
  let thBar = jvp(wT, wBar, new Float64Array(K));
  const dZs = new Float64Array(ns * K);
  if (firstOrder || steps === 0) return { loss, dTheta: thBar, dZs, dZq };

  // Reverse through the Adam steps.
  const mBar = new Float64Array(K), vBar = new Float64Array(K);
  const gBar = new Float64Array(K), uBar = new Float64Array(K), a = new Float64Array(K);
  for (let t = steps; t >= 1; t--) {
    const bc1 = 1 - b1 ** t, bc2 = 1 - b2 ** t;
    const g = grads[t - 1], mt = ms[t - 1], vt = vs[t - 1];
    for (let k = 0; k < K; k++) {
      const mh = mt[k] / bc1, vh = vt[k] / bc2, sq = Math.sqrt(vh), D = sq + eps;
      mBar[k] += (-lr / D) * thBar[k] / bc1;
      if (sq > 0) vBar[k] += (lr * mh / (D * D) / (2 * sq)) * thBar[k] / bc2;
      gBar[k] = (1 - b1) * mBar[k] + (1 - b2) * 2 * g[k] * vBar[k];
      mBar[k] *= b1;
      vBar[k] *= b2;
    }
    // theta_{t-1} gets thBar (identity path) plus the VJP of g = J(w) u(w, zs).
    const th = thetas[t - 1];
    softmax(th, w);
    // recompute u and per-pair quantities
    u.fill(0);
    const sArr = new Float64Array(ns), hArr = new Float64Array(ns);
    for (let p = 0; p < ns; p++) {
      let mp = 0;
      for (let k = 0; k < K; k++) mp += w[k] * zs[p * K + k];
      const sp = sigmoid(-mp);
      sArr[p] = -sp / ns;
      hArr[p] = sp * (1 - sp);
      for (let k = 0; k < K; k++) u[k] += sArr[p] * zs[p * K + k];
    }
    jvp(w, gBar, uBar);
    let wu = 0, wg = 0;
    for (let k = 0; k < K; k++) {
      wu += w[k] * u[k];
      wg += w[k] * gBar[k];
    }
    for (let k = 0; k < K; k++) a[k] = gBar[k] * u[k] - gBar[k] * wu - u[k] * wg;
    for (let p = 0; p < ns; p++) {
      let uz = 0;
      for (let k = 0; k < K; k++) uz += uBar[k] * zs[p * K + k];
      const mBarP = (uz / ns) * hArr[p];
      for (let k = 0; k < K; k++) {
        a[k] += mBarP * zs[p * K + k];
        dZs[p * K + k] += sArr[p] * uBar[k] + mBarP * w[k];
      }
    }
    const add = jvp(w, a, new Float64Array(K));
    const next = new Float64Array(K);
    for (let k = 0; k < K; k++) next[k] = thBar[k] + add[k];
    thBar = next;
  }
  return { loss, dTheta: thBar, dZs, dZq };
}
