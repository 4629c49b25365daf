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

/**
 * Forward of the BT gradient at weights w = softmax(theta): u = dL/dw = sum_p s_p z_p with
 * s_p = -sigmoid(-m_p)/n, m_p = w . z_p. With `keep`, also each pair's s_p and the
 * curvature h_p = sigmoid(-m_p)(1 - sigmoid(-m_p)), which the backward pass needs.
 */
function btForward(
  w: Float64Array,
  z: Float64Array,
  n: number,
  u: Float64Array,
  keep?: { s: Float64Array; h: Float64Array },
): void {
  const K = w.length;
  u.fill(0);
  for (let p = 0; p < n; p++) {
    let m = 0;
    for (let k = 0; k < K; k++) m += w[k] * z[p * K + k];
    const sp = sigmoid(-m), s = -sp / n;
    if (keep) {
      keep.s[p] = s;
      keep.h[p] = sp * (1 - sp);
    }
    for (let k = 0; k < K; k++) u[k] += s * z[p * K + k];
  }
}

/** Gradient of the BT loss w.r.t. theta, g = J(w) u, into g. */
function btGrad(w: Float64Array, z: Float64Array, n: number, g: Float64Array, u: Float64Array): void {
  btForward(w, z, n, u);
  jvp(w, u, g);
}

/**
 * Backward of g = J(w) u(w, Z) (btGrad): given gBar = dL/dg, adds dL/dZ into dZ and
 * returns dL/dtheta through w.
 */
function btGradBackward(
  w: Float64Array,
  z: Float64Array,
  n: number,
  fwd: { u: Float64Array; s: Float64Array; h: Float64Array },
  gBar: Float64Array,
  dZ: Float64Array,
): Float64Array {
  const K = w.length, u = fwd.u;
  const uBar = jvp(w, gBar, new Float64Array(K));
  let wu = 0, wg = 0;
  for (let k = 0; k < K; k++) {
    wu += w[k] * u[k];
    wg += w[k] * gBar[k];
  }
  // through J(w): the terms of d(J u)/dw, then through u(w): each pair's margin
  const a = new Float64Array(K);
  for (let k = 0; k < K; k++) a[k] = gBar[k] * u[k] - gBar[k] * wu - u[k] * wg;
  for (let p = 0; p < n; p++) {
    let uz = 0;
    for (let k = 0; k < K; k++) uz += uBar[k] * z[p * K + k];
    const mBar = (uz / n) * fwd.h[p];
    for (let k = 0; k < K; k++) {
      a[k] += mBar * z[p * K + k];
      dZ[p * K + k] += fwd.s[p] * uBar[k] + mBar * w[k];
    }
  }
  return jvp(w, a, new Float64Array(K));
}

/** The BT loss of Z (n x K) under weights w, with dL/dw and dL/dZ. */
function btLossBackward(
  w: Float64Array,
  z: Float64Array,
  n: number,
): { loss: number; wBar: Float64Array; dZ: Float64Array } {
  const K = w.length, wBar = new Float64Array(K), dZ = new Float64Array(n * K);
  let loss = 0;
  for (let p = 0; p < n; p++) {
    let m = 0;
    for (let k = 0; k < K; k++) m += w[k] * z[p * K + k];
    loss += softplus(-m);
    const dm = -sigmoid(-m) / n;
    for (let k = 0; k < K; k++) {
      wBar[k] += dm * z[p * K + k];
      dZ[p * K + k] = dm * w[k];
    }
  }
  return { loss: loss / n, wBar, dZ };
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
 * Backward of adamStep (step t, which read gradient g and wrote moments m, v): takes
 * thBar = dL/dtheta_t, accumulates the moments' adjoints in mBar, vBar (carried to step
 * t-1) and writes dL/dg into gBar.
 */
function adamBackward(
  thBar: Float64Array,
  g: Float64Array,
  m: Float64Array,
  v: Float64Array,
  t: number,
  opts: { lr: number; b1: number; b2: number; eps: number },
  mBar: Float64Array,
  vBar: Float64Array,
  gBar: Float64Array,
): void {
  const { lr, b1, b2, eps } = opts;
  const bc1 = 1 - b1 ** t, bc2 = 1 - b2 ** t;
  for (let k = 0; k < thBar.length; k++) {
    const mh = m[k] / bc1, vh = v[k] / bc2, sq = Math.sqrt(vh), D = sq + eps;
    mBar[k] += (-lr / D) * thBar[k] / bc1;
    if (sq > 0) vBar[k] += (lr * mh / (D * D) / (2 * sq)) * thBar[k] / bc2;
    gBar[k] = (1 - b1) * mBar[k] + (1 - b2) * 2 * g[k] * vBar[k];
    mBar[k] *= b1;
    vBar[k] *= b2;
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
  // forward: every step's theta, gradient and moments (adaptTheta's loop, kept)
  const thetas: Float64Array[] = [Float64Array.from(theta)];
  const grads: Float64Array[] = [], ms: Float64Array[] = [], vs: Float64Array[] = [];
  let m = new Float64Array(K), v = new Float64Array(K);
  const u = new Float64Array(K), w = new Float64Array(K);
  for (let t = 1; t <= steps; t++) {
    const th = thetas[t - 1].slice(), g = new Float64Array(K);
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
  // the query loss at the adapted theta, and its adjoints
  const wT = softmax(thetas[steps]);
  const { loss, wBar, dZ: dZq } = btLossBackward(wT, zq, nq);
  let thBar = jvp(wT, wBar, new Float64Array(K));
  const dZs = new Float64Array(ns * K);
  if (firstOrder || steps === 0) return { loss, dTheta: thBar, dZs, dZq };

  // reverse through the Adam steps: each step's update, then the gradient it read
  const mBar = new Float64Array(K), vBar = new Float64Array(K), gBar = new Float64Array(K);
  const fwd = { u, s: new Float64Array(ns), h: new Float64Array(ns) };
  for (let t = steps; t >= 1; t--) {
    adamBackward(thBar, grads[t - 1], ms[t - 1], vs[t - 1], t, { lr, b1, b2, eps }, mBar, vBar, gBar);
    softmax(thetas[t - 1], w);
    btForward(w, zs, ns, u, fwd);
    const viaGrad = btGradBackward(w, zs, ns, fwd, gBar, dZs);
    const next = new Float64Array(K);
    for (let k = 0; k < K; k++) next[k] = thBar[k] + viaGrad[k];
    thBar = next;
  }
  return { loss, dTheta: thBar, dZs, dZq };
}
