/**
 * The K-space WGSL kernels, run through tfjs-backend-webgpu's custom-program route so they
 * sit in tfjs's command stream with nothing read back:
 * - kspaceGpu, a training step's K-space part: one workgroup, one thread per user of the
 *   step. Each thread runs its user's inner loop (MRM: Adam steps on softmax weights,
 *   differentiated through; mrm-p: the damped Newton MAP fit, differentiated implicitly),
 *   then thread 0 turns the users' query losses into the objective's coefficients (RPO
 *   or the mean), and every thread writes its pairs' dLoss/dz scaled by its coefficient;
 * - kspaceEvalGpu, an evaluation: one thread per user, as many workgroups as it takes,
 *   the same inner loop or MAP fit, then the pairs ranked right;
 * - clipAdamGpu and clipAdamPackedGpu, the outer step's global-norm clip and Adam;
 * - kspaceGpuReady, the once-per-process check of every kernel on known values.
 *
 * The arithmetic is the host's (`lib/model/kspace.ts`, `lib/model/personal.ts`,
 * `lib/train/rpo.ts`) in float32, with two changes that float32 needs:
 * - the first inner Adam step's derivative with respect to its gradient is the closed
 *   form -lr eps / (|g| + eps)^2; the host's two terms of size lr / |g| cancel to it,
 *   which float32 cannot resolve;
 * - the Newton fit stops at float32's resolution (the gradient stops shrinking, at most
 *   40 iterations) instead of at 1e-10.
 */
import * as tf from "@tensorflow/tfjs-core";
import { firstLayerGradAdamGpu, firstLayerGradGpu, ONE_GROUP_CLIP_ADAM, projectPairsGpu } from "../model/pairs_gpu.ts";

/** The most users per step the kernel takes (one workgroup; the host path runs larger steps). */
export const KSPACE_GPU_LIMITS = { users: 64 } as const;

/** What the kernel computes, and where in the flat parameter buffer its inputs are. */
export interface KspaceGpuOptions {
  /** base functions K */
  k: number;
  /** users in the step (B) */
  users: number;
  /** pairs in the step (rows of z) */
  pairs: number;
  /** mrm-p's MAP fit rather than MRM's inner Adam */
  personal: boolean;
  innerLr: number;
  innerSteps: number;
  firstOrder: boolean;
  objective: "rpo" | "mean";
  rpoRho: number;
  rpoGamma: number;
  /** offset of shared_weight (w0 for mrm-p) in the parameter buffer */
  thetaOffset: number;
  /** offset of prior_log_precision (mrm-p) in the parameter buffer */
  rhoOffset: number;
  /** where the users' pair ranges start in `meta` (0 when it holds only them) */
  metaOffset?: number;
}

const B1 = 0.9, B2 = 0.999, EPS = 1e-8;

const HELPERS = `
const B1 = ${B1};
const B2 = ${B2};
const EPSA = ${EPS};

// Every per-user vector lives in the user's scratch block at the end of result (offsets
// below), not in private arrays: run-time indexed private arrays made the software
// adapter's shader compiler take minutes.
fn R(i: i32) -> f32 { return result[i]; }
fn W(i: i32, v: f32) { result[i] = v; }

fn ksSoftplus(x: f32) -> f32 {
  if (x > 0.0) { return x + log(1.0 + exp(-x)); }
  return log(1.0 + exp(x));
}

fn ksSigmoid(x: f32) -> f32 {
  if (x >= 0.0) { return 1.0 / (1.0 + exp(-x)); }
  let e = exp(x);
  return e / (1.0 + e);
}

fn ksZ(p: i32, k: i32) -> f32 { return Z[p * uniforms.nK + k]; }

fn ksMargin(w: i32, p: i32) -> f32 {
  var m = 0.0;
  for (var k = 0; k < uniforms.nK; k++) { m += R(w + k) * ksZ(p, k); }
  return m;
}

// w = softmax(theta at th)
fn ksSoftmax(th: i32, w: i32) {
  let K = uniforms.nK;
  var mx = -3.0e38;
  for (var k = 0; k < K; k++) { mx = max(mx, R(th + k)); }
  var s = 0.0;
  for (var k = 0; k < K; k++) { let e = exp(R(th + k) - mx); W(w + k, e); s += e; }
  for (var k = 0; k < K; k++) { W(w + k, R(w + k) / s); }
}

// out = J(w) v with J = diag(w) - w w^T (out distinct from v)
fn ksJvp(w: i32, v: i32, out: i32) {
  var wv = 0.0;
  for (var k = 0; k < uniforms.nK; k++) { wv += R(w + k) * R(v + k); }
  for (var k = 0; k < uniforms.nK; k++) { W(out + k, R(w + k) * (R(v + k) - wv)); }
}

// u = sum_p s_p z_p over pairs [start, start + n), s_p = -sigmoid(-m_p) / n
fn ksBtU(w: i32, start: i32, n: i32, u: i32) {
  for (var k = 0; k < uniforms.nK; k++) { W(u + k, 0.0); }
  for (var p = start; p < start + n; p++) {
    let s = -ksSigmoid(-ksMargin(w, p)) / f32(n);
    for (var k = 0; k < uniforms.nK; k++) { W(u + k, R(u + k) + s * ksZ(p, k)); }
  }
}

// Cholesky factor (lower) of the K x K matrix at a, in place; false when not positive definite
fn ksCholesky(a: i32) -> bool {
  let K = uniforms.nK;
  for (var j = 0; j < K; j++) {
    var d = R(a + j * K + j);
    for (var t = 0; t < j; t++) { d -= R(a + j * K + t) * R(a + j * K + t); }
    if (!(d > 0.0)) { return false; }
    let l = sqrt(d);
    W(a + j * K + j, l);
    for (var i = j + 1; i < K; i++) {
      var s = R(a + i * K + j);
      for (var t = 0; t < j; t++) { s -= R(a + i * K + t) * R(a + j * K + t); }
      W(a + i * K + j, s / l);
    }
  }
  return true;
}

// x = (L L^T)^-1 b with the factor at l (x distinct from b)
fn ksCholSolve(l: i32, b: i32, x: i32) {
  let K = uniforms.nK;
  for (var i = 0; i < K; i++) {
    var s = R(b + i);
    for (var t = 0; t < i; t++) { s -= R(l + i * K + t) * R(x + t); }
    W(x + i, s / R(l + i * K + i));
  }
  for (var i = K - 1; i >= 0; i--) {
    var s = R(x + i);
    for (var t = i + 1; t < K; t++) { s -= R(l + t * K + i) * R(x + t); }
    W(x + i, s / R(l + i * K + i));
  }
}

// mrm-p's penalised support loss F(w)
fn ksMapLoss(w: i32, w0: i32, lam: i32, start: i32, n: i32) -> f32 {
  var f = 0.0;
  for (var p = start; p < start + n; p++) { f += ksSoftplus(-ksMargin(w, p)); }
  for (var k = 0; k < uniforms.nK; k++) { let d = R(w + k) - R(w0 + k); f += 0.5 * R(lam + k) * d * d; }
  return f;
}

// gradient (at g) and Hessian (at h, full) of F at w
fn ksGradHess(w: i32, w0: i32, lam: i32, start: i32, n: i32, g: i32, h: i32) {
  let K = uniforms.nK;
  for (var k = 0; k < K; k++) { W(g + k, 0.0); }
  for (var i = 0; i < K * K; i++) { W(h + i, 0.0); }
  for (var p = start; p < start + n; p++) {
    let s = ksSigmoid(-ksMargin(w, p));
    let c = s * (1.0 - s);
    for (var k = 0; k < K; k++) {
      let zk = ksZ(p, k);
      W(g + k, R(g + k) - s * zk);
      for (var j = 0; j <= k; j++) { W(h + k * K + j, R(h + k * K + j) + c * zk * ksZ(p, j)); }
    }
  }
  for (var k = 0; k < K; k++) {
    W(g + k, R(g + k) + R(lam + k) * (R(w + k) - R(w0 + k)));
    W(h + k * K + k, R(h + k * K + k) + R(lam + k));
    for (var j = 0; j < k; j++) { W(h + j * K + k, R(h + k * K + j)); }
  }
}

// mrm-p's MAP fit of w (starting at w0) by damped Newton, at float32's resolution; leaves
// the Cholesky factor of the Hessian at w in h. false when the Hessian is not positive definite.
fn ksMapFit(w: i32, w0: i32, lam: i32, start: i32, n: i32, g: i32, h: i32, tmp: i32, u: i32) -> bool {
  let K = uniforms.nK;
  for (var k = 0; k < K; k++) { W(w + k, R(w0 + k)); }
  var f = ksMapLoss(w, w0, lam, start, n);
  var prevG = 3.0e38;
  for (var it = 0; it < 40; it++) {
    ksGradHess(w, w0, lam, start, n, g, h);
    var gmax = 0.0;
    for (var k = 0; k < K; k++) { gmax = max(gmax, abs(R(g + k))); }
    if (!ksCholesky(h)) { return false; }
    if (gmax < 1e-7) { break; }
    ksCholSolve(h, g, tmp);
    var slope = 0.0;
    for (var k = 0; k < K; k++) { slope += R(g + k) * R(tmp + k); }
    if (slope < 2e-6 * max(1.0, abs(f))) {
      // quadratic region: a line search cannot judge the step in float32; stop once
      // the gradient no longer shrinks (float32's floor)
      if (gmax >= 0.5 * prevG) { break; }
      prevG = gmax;
      for (var k = 0; k < K; k++) { W(w + k, R(w + k) - R(tmp + k)); }
      f = ksMapLoss(w, w0, lam, start, n);
      continue;
    }
    prevG = gmax;
    var step = 1.0;
    var ok = false;
    for (var ls = 0; ls < 30; ls++) {
      for (var k = 0; k < K; k++) { W(u + k, R(w + k) - step * R(tmp + k)); }
      let ft = ksMapLoss(u, w0, lam, start, n);
      if (ft <= f - 1e-4 * step * slope || ft <= f) { f = ft; ok = true; break; }
      step *= 0.5;
    }
    if (!ok) { break; }
    for (var k = 0; k < K; k++) { W(w + k, R(u + k)); }
  }
  ksGradHess(w, w0, lam, start, n, g, h);
  return ksCholesky(h);
}

// MRM's inner loop: uniforms.nT Adam steps on the logits from those at th, on the support
// pairs; keeps every step's logits (th, (T + 1) x K), gradient (gr), and moments (mm, vv),
// and leaves softmax of the last logits in w
fn ksInnerAdam(th: i32, gr: i32, mm: i32, vv: i32, w: i32, u: i32, g: i32, start: i32, n: i32) {
  let K = uniforms.nK;
  for (var t = 1; t <= uniforms.nT; t++) {
    ksSoftmax(th + (t - 1) * K, w);
    ksBtU(w, start, n, u);
    ksJvp(w, u, g);
    let bc1 = 1.0 - pow(B1, f32(t));
    let bc2 = 1.0 - pow(B2, f32(t));
    for (var k = 0; k < K; k++) {
      var mp = 0.0; var vp = 0.0;
      if (t > 1) { mp = R(mm + (t - 2) * K + k); vp = R(vv + (t - 2) * K + k); }
      let gk = R(g + k);
      let m = B1 * mp + (1.0 - B1) * gk;
      let v = B2 * vp + (1.0 - B2) * gk * gk;
      W(gr + (t - 1) * K + k, gk);
      W(mm + (t - 1) * K + k, m);
      W(vv + (t - 1) * K + k, v);
      W(th + t * K + k, R(th + (t - 1) * K + k) - uniforms.innerLr * (m / bc1) / (sqrt(v / bc2) + EPSA));
    }
  }
  ksSoftmax(th + uniforms.nT * K, w);
}
`;

const TRAIN_MAIN = `
const BMAX = ${KSPACE_GPU_LIMITS.users};
var<workgroup> ksLoss: array<f32, BMAX>;
var<workgroup> ksCoef: array<f32, BMAX>;
var<workgroup> ksOrder: array<i32, BMAX>;

fn main(index: i32) {
  let b = i32(localId.x);
  let K = uniforms.nK;
  let B = uniforms.nB;
  let T = uniforms.nT;
  let PK = uniforms.nPairs * K;
  let live = b < B;
  var sS = 0; var nS = 0; var qS = 0; var nQ = 0;
  let mo = uniforms.metaOff + 4 * b;
  if (live) { sS = Meta[mo]; nS = Meta[mo + 1]; qS = Meta[mo + 2]; nQ = Meta[mo + 3]; }

  // this user's scratch block
  let base = PK + 2 * K + 1 + B + b * uniforms.scratch;
  let oTh = base;                  // (T + 1) x K: theta before each inner step, and after
  let oGr = oTh + (T + 1) * K;     // T x K: the gradient each step read
  let oMm = oGr + T * K;           // T x K: Adam's first moment after each step
  let oVv = oMm + T * K;           // T x K: and its second
  let oHm = oVv + T * K;           // K x K: mrm-p's Hessian, then its Cholesky factor
  let w = oHm + K * K;
  let w0 = w + K;
  let lam = w0 + K;
  let u = lam + K;
  let g = u + K;
  let tmp = g + K;
  let thBar = tmp + K;
  let mBar = thBar + K;
  let vBar = mBar + K;
  let gBar = vBar + K;
  let uBar = gBar + K;
  let a = uBar + K;
  var loss = 0.0;

  // ---- forward: the user's adaptation and query loss
  if (live) {
    if (uniforms.personal == 1) {
      for (var k = 0; k < K; k++) {
        W(w0 + k, Params[uniforms.thetaOff + k]);
        W(lam + k, exp(Params[uniforms.rhoOff + k]));
      }
      if (!ksMapFit(w, w0, lam, sS, nS, g, oHm, tmp, u)) { loss = uniforms.NAN; }
    } else {
      for (var k = 0; k < K; k++) { W(oTh + k, Params[uniforms.thetaOff + k]); }
      ksInnerAdam(oTh, oGr, oMm, oVv, w, u, g, sS, nS);
    }
    for (var p = qS; p < qS + nQ; p++) { loss += ksSoftplus(-ksMargin(w, p)); }
    loss = loss / f32(nQ);
    ksLoss[b] = loss;
  }
  workgroupBarrier();

  // ---- the objective and each user's coefficient (thread 0)
  if (b == 0) {
    var obj = 0.0;
    if (uniforms.meanObj == 1) {
      for (var i = 0; i < B; i++) { ksCoef[i] = 1.0 / f32(B); obj += ksLoss[i] / f32(B); }
    } else {
      // torch.quantile(L, 1 - rho), linear interpolation; ties in index order
      for (var i = 0; i < B; i++) {
        var r = 0;
        for (var j = 0; j < B; j++) {
          if (ksLoss[j] < ksLoss[i] || (ksLoss[j] == ksLoss[i] && j < i)) { r++; }
        }
        ksOrder[r] = i;
      }
      let pos = (1.0 - uniforms.rpoRho) * f32(B - 1);
      let loR = i32(floor(pos));
      let hiR = min(loR + 1, B - 1);
      let frac = pos - f32(loR);
      let lo = ksOrder[loR];
      let hi = ksOrder[hiR];
      let tau = ksLoss[lo] + frac * (ksLoss[hi] - ksLoss[lo]);
      let gam = uniforms.rpoGamma;
      if (gam <= 0.0) {
        for (var i = 0; i < B; i++) {
          var m = 0.0;
          if (ksLoss[i] > tau) { m = 1.0; }
          ksCoef[i] = m;
          obj += m * ksLoss[i];
        }
      } else {
        var dTau = 0.0;
        for (var i = 0; i < B; i++) {
          let s = ksSigmoid((ksLoss[i] - tau) / gam);
          obj += s * ksLoss[i];
          let ds = ksLoss[i] * s * (1.0 - s) / gam;
          ksCoef[i] = s + ds;
          dTau -= ds;
        }
        ksCoef[lo] += dTau * (1.0 - frac);
        ksCoef[hi] += dTau * frac;
      }
    }
    W(PK + 2 * K, obj);
    for (var i = 0; i < B; i++) { W(PK + 2 * K + 1 + i, ksLoss[i]); }
  }
  workgroupBarrier();

  // ---- backward: this user's dLoss/dz (scaled by its coefficient) and prior gradients;
  // the user's dTheta and dRho go to thBar and mBar for thread 0 to sum
  if (live) {
    let c = ksCoef[b];
    for (var p = sS; p < sS + nS; p++) { for (var k = 0; k < K; k++) { W(p * K + k, 0.0); } }
    // the query loss at w: dL/dw into u, dL/dz_q written
    for (var k = 0; k < K; k++) { W(u + k, 0.0); }
    for (var p = qS; p < qS + nQ; p++) {
      let s = ksSigmoid(-ksMargin(w, p)) / f32(nQ);
      for (var k = 0; k < K; k++) {
        W(u + k, R(u + k) - s * ksZ(p, k));
        W(p * K + k, -c * s * R(w + k));
      }
    }
    if (uniforms.personal == 1) {
      // implicit differentiation: v = H^-1 dL/dw (v at tmp)
      ksCholSolve(oHm, u, tmp);
      for (var k = 0; k < K; k++) {
        W(thBar + k, c * R(lam + k) * R(tmp + k));
        W(mBar + k, -c * R(tmp + k) * R(lam + k) * (R(w + k) - R(w0 + k)));
      }
      for (var p = sS; p < sS + nS; p++) {
        var m = 0.0; var vz = 0.0;
        for (var k = 0; k < K; k++) { m += R(w + k) * ksZ(p, k); vz += R(tmp + k) * ksZ(p, k); }
        let sn = ksSigmoid(-m);
        let cc = sn * (1.0 - sn) * vz;
        for (var k = 0; k < K; k++) { W(p * K + k, c * (sn * R(tmp + k) - cc * R(w + k))); }
      }
    } else {
      ksJvp(w, u, thBar);
      for (var k = 0; k < K; k++) { W(mBar + k, 0.0); W(vBar + k, 0.0); }
      if (uniforms.firstOrder == 0) {
        for (var t = T; t >= 1; t--) {
          // Adam's step t: its adjoints, and dL/dg into gBar
          let bc1 = 1.0 - pow(B1, f32(t));
          let bc2 = 1.0 - pow(B2, f32(t));
          for (var k = 0; k < K; k++) {
            let gk = R(oGr + (t - 1) * K + k);
            let mh = R(oMm + (t - 1) * K + k) / bc1;
            let sq = sqrt(R(oVv + (t - 1) * K + k) / bc2);
            let D = sq + EPSA;
            let tb = R(thBar + k);
            var mb = R(mBar + k);
            var vb = R(vBar + k);
            if (t == 1) {
              // the step-1 terms in closed form (two terms of size lr / |g| cancel to it)
              W(gBar + k, (1.0 - B1) * mb + (1.0 - B2) * 2.0 * gk * vb
                - uniforms.innerLr * EPSA / ((abs(gk) + EPSA) * (abs(gk) + EPSA)) * tb);
            } else {
              mb += (-uniforms.innerLr / D) * tb / bc1;
              if (sq > 0.0) { vb += (uniforms.innerLr * mh / (D * D) / (2.0 * sq)) * tb / bc2; }
              W(gBar + k, (1.0 - B1) * mb + (1.0 - B2) * 2.0 * gk * vb);
            }
            W(mBar + k, mb * B1);
            W(vBar + k, vb * B2);
          }
          // through the gradient g = J(w) u(w, Z) that step t read
          ksSoftmax(oTh + (t - 1) * K, w);
          ksBtU(w, sS, nS, u);
          ksJvp(w, gBar, uBar);
          var wu = 0.0; var wg = 0.0;
          for (var k = 0; k < K; k++) { wu += R(w + k) * R(u + k); wg += R(w + k) * R(gBar + k); }
          for (var k = 0; k < K; k++) { W(a + k, R(gBar + k) * R(u + k) - R(gBar + k) * wu - R(u + k) * wg); }
          for (var p = sS; p < sS + nS; p++) {
            let sp = ksSigmoid(-ksMargin(w, p));
            var uz = 0.0;
            for (var k = 0; k < K; k++) { uz += R(uBar + k) * ksZ(p, k); }
            let mB = (uz / f32(nS)) * sp * (1.0 - sp);
            let s = -sp / f32(nS);
            for (var k = 0; k < K; k++) {
              W(a + k, R(a + k) + mB * ksZ(p, k));
              W(p * K + k, R(p * K + k) + c * (s * R(uBar + k) + mB * R(w + k)));
            }
          }
          ksJvp(w, a, tmp);
          for (var k = 0; k < K; k++) { W(thBar + k, R(thBar + k) + R(tmp + k)); }
        }
      }
      for (var k = 0; k < K; k++) { W(thBar + k, c * R(thBar + k)); W(mBar + k, 0.0); }
    }
  }
  // thread 0 reads the other threads' scratch blocks: storage, not workgroup, memory
  storageBarrier();
  workgroupBarrier();
  if (b == 0) {
    for (var k = 0; k < K; k++) {
      var st = 0.0; var sr = 0.0;
      for (var i = 0; i < B; i++) {
        let o = PK + 2 * K + 1 + B + i * uniforms.scratch + (T + 1) * K + 3 * T * K + K * K + 6 * K;
        st += R(o + k);
        sr += R(o + K + k);
      }
      W(PK + k, st);
      W(PK + K + k, sr);
    }
  }
}
`;

const EVAL_MAIN = `
// one thread per user, as many workgroups as it takes: adapt on the user's train pairs,
// then count the test and validation pairs ranked right (margin > 0; ties are wrong)
fn main(index: i32) {
  let b = index;
  if (b >= uniforms.nU) { return; }
  let K = uniforms.nK;
  let T = uniforms.nT;
  let mo = uniforms.metaOff + 6 * b;
  let sS = Meta[mo]; let nS = Meta[mo + 1];
  let base = 2 * uniforms.nU + b * uniforms.scratch;
  let oTh = base;
  let oGr = oTh + (T + 1) * K;
  let oMm = oGr + T * K;
  let oVv = oMm + T * K;
  let oHm = oVv + T * K;
  let w = oHm + K * K;
  let w0 = w + K;
  let lam = w0 + K;
  let u = lam + K;
  let g = u + K;
  let tmp = g + K;
  var ok = true;
  if (uniforms.personal == 1) {
    for (var k = 0; k < K; k++) {
      W(w0 + k, Params[uniforms.thetaOff + k]);
      W(lam + k, exp(Params[uniforms.rhoOff + k]));
    }
    ok = ksMapFit(w, w0, lam, sS, nS, g, oHm, tmp, u);
  } else {
    for (var k = 0; k < K; k++) { W(oTh + k, Params[uniforms.thetaOff + k]); }
    ksInnerAdam(oTh, oGr, oMm, oVv, w, u, g, sS, nS);
  }
  for (var part = 0; part < 2; part++) {
    let start = Meta[mo + 2 + 2 * part];
    let n = Meta[mo + 3 + 2 * part];
    var right = 0;
    for (var p = start; p < start + n; p++) {
      if (ksMargin(w, p) > 0.0) { right++; }
    }
    if (ok) { W(2 * b + part, f32(right)); } else { W(2 * b + part, uniforms.NAN); }
  }
}
`;

/** tfjs-backend-webgpu's program for the evaluation kernel: one thread per user, 64 to a workgroup. */
class KspaceEvalProgram {
  outputShape: number[];
  shaderKey = "mrmKspaceEval";
  dispatchLayout = { x: [0] };
  dispatch: [number, number, number];
  variableNames = ["Z", "Meta", "Params"];
  uniforms =
    "nU : i32, nK : i32, nT : i32, scratch : i32, personal : i32, thetaOff : i32, rhoOff : i32, metaOff : i32, innerLr : f32,";
  workgroupSize: [number, number, number] = [64, 1, 1];
  size = false;
  constructor(outLength: number, users: number) {
    this.outputShape = [outLength];
    this.dispatch = [Math.max(1, Math.ceil(users / 64)), 1, 1];
  }
  getUserCode(): string {
    return HELPERS + EVAL_MAIN;
  }
}

/** What the evaluation kernel adapts with. */
export interface KspaceEvalOptions {
  /** base functions K */
  k: number;
  /** users U */
  users: number;
  /** mrm-p's MAP fit rather than MRM's inner Adam */
  personal: boolean;
  innerLr: number;
  innerSteps: number;
  /** offset of shared_weight (w0 for mrm-p) in the parameter tensor */
  thetaOffset: number;
  /** offset of prior_log_precision (mrm-p) in the parameter tensor */
  rhoOffset: number;
  /** where the users' ranges start in `meta` (0 when it holds only them) */
  metaOffset?: number;
}

/** Scratch values per user in the evaluation kernel: the inner steps' history, a K x K matrix, 6 vectors. */
function evalScratchPerUser(k: number, innerSteps: number): number {
  return (innerSteps + 1) * k + 3 * innerSteps * k + k * k + 6 * k;
}

/**
 * Adapts every user at once and counts the pairs each ranks right: `z` all users' pair
 * features (rows x K), `meta` per user [train start, train count, test start, test
 * count, validation start, validation count] in rows of z, `params` holds the shared
 * weight (w0) and, for mrm-p, the prior's log precision. The first 2 x users values of
 * the result are each user's [test pairs right, validation pairs right] (NaN where
 * mrm-p's fit failed); the rest is scratch. Nothing is read back.
 */
export function kspaceEvalGpu(z: tf.Tensor, meta: tf.Tensor, params: tf.Tensor, o: KspaceEvalOptions): tf.Tensor1D {
  const scratch = evalScratchPerUser(o.k, o.innerSteps);
  const program = new KspaceEvalProgram(o.users * (2 + scratch), o.users);
  const uniforms = [
    { type: "int32", data: [o.users] },
    { type: "int32", data: [o.k] },
    { type: "int32", data: [o.innerSteps] },
    { type: "int32", data: [scratch] },
    { type: "int32", data: [o.personal ? 1 : 0] },
    { type: "int32", data: [o.thetaOffset] },
    { type: "int32", data: [o.rhoOffset] },
    { type: "int32", data: [o.metaOffset ?? 0] },
    { type: "float32", data: [o.innerLr] },
  ];
  // deno-lint-ignore no-explicit-any
  const backend = tf.backend() as any;
  const info = backend.runWebGPUProgram(program, [z, meta, params], "float32", uniforms);
  return tf.engine().makeTensorFromTensorInfo(info) as tf.Tensor1D;
}

/**
 * The training step's K-space kernel as WGSL without tfjs's preamble (bindings `result`,
 * `Z`, `Meta`, `Params`, the `uniforms` of KspaceProgram plus `NAN`, `localId`, and a
 * `main(index)` called by every thread of one workgroup of KSPACE_GPU_LIMITS.users), for
 * callers that bind it themselves (lib/train/epoch_gpu.ts).
 */
export const KSPACE_TRAIN_WGSL: string = HELPERS + TRAIN_MAIN;

/** The uniforms the K-space training kernel reads, in tfjs's declaration syntax. */
export const KSPACE_TRAIN_UNIFORMS =
  "nB : i32, nK : i32, nT : i32, nPairs : i32, scratch : i32, personal : i32, firstOrder : i32, meanObj : i32, thetaOff : i32, rhoOff : i32, metaOff : i32, innerLr : f32, rpoRho : f32, rpoGamma : f32,";

/** Scratch values per user of the training kernel (see scratchPerUser). */
export function kspaceScratchPerUser(k: number, innerSteps: number): number {
  return scratchPerUser(k, innerSteps);
}

/** The clip and Adam of clipAdamPackedGpu as WGSL without tfjs's preamble (bindings `result`, `G`, `Packed`, `PMV`). */
export const CLIP_ADAM_PACKED_WGSL = `fn grad(i: i32) -> f32 { return G[i]; }\n${ONE_GROUP_CLIP_ADAM}`;

/** tfjs-backend-webgpu's program description for the kernel (one workgroup of BMAX threads). */
class KspaceProgram {
  outputShape: number[];
  shaderKey = "mrmKspaceStep";
  dispatchLayout = { x: [0] };
  dispatch: [number, number, number] = [1, 1, 1];
  variableNames = ["Z", "Meta", "Params"];
  uniforms = KSPACE_TRAIN_UNIFORMS;
  workgroupSize: [number, number, number] = [KSPACE_GPU_LIMITS.users, 1, 1];
  size = false;
  constructor(outLength: number) {
    this.outputShape = [outLength];
  }
  getUserCode(): string {
    return HELPERS + TRAIN_MAIN;
  }
}

/** Scratch values per user: thetas, gradients and moments of the inner steps, a K x K matrix, 12 vectors. */
function scratchPerUser(k: number, innerSteps: number): number {
  return (innerSteps + 1) * k + 3 * innerSteps * k + k * k + 12 * k;
}

/**
 * Length of the kernel's output: dz (pairs x K), dTheta (K), dRho (K), the objective,
 * each user's loss; then the users' scratch blocks.
 */
export function kspaceOutputLength(o: Pick<KspaceGpuOptions, "k" | "pairs" | "users" | "innerSteps">): number {
  return o.pairs * o.k + 2 * o.k + 1 + o.users * (1 + scratchPerUser(o.k, o.innerSteps));
}

/**
 * Runs the kernel: `z` the step's pair features (pairs x K, each user's support pairs
 * then query pairs), `meta` per user [support start, support count, query start, query
 * count] in rows of z, `params` the flat parameter buffer. Returns the flat output
 * described by kspaceOutputLength; nothing is read back.
 */
export function kspaceGpu(z: tf.Tensor, meta: tf.Tensor, params: tf.Tensor, o: KspaceGpuOptions): tf.Tensor1D {
  if (o.users > KSPACE_GPU_LIMITS.users) {
    throw new RangeError(`kspaceGpu: ${o.users} users in a step, over the kernel's ${KSPACE_GPU_LIMITS.users}`);
  }
  const program = new KspaceProgram(kspaceOutputLength(o));
  const uniforms = [
    { type: "int32", data: [o.users] },
    { type: "int32", data: [o.k] },
    { type: "int32", data: [o.innerSteps] },
    { type: "int32", data: [o.pairs] },
    { type: "int32", data: [scratchPerUser(o.k, o.innerSteps)] },
    { type: "int32", data: [o.personal ? 1 : 0] },
    { type: "int32", data: [o.firstOrder ? 1 : 0] },
    { type: "int32", data: [o.objective === "mean" ? 1 : 0] },
    { type: "int32", data: [o.thetaOffset] },
    { type: "int32", data: [o.rhoOffset] },
    { type: "int32", data: [o.metaOffset ?? 0] },
    { type: "float32", data: [o.innerLr] },
    { type: "float32", data: [o.rpoRho] },
    { type: "float32", data: [o.rpoGamma] },
  ];
  // deno-lint-ignore no-explicit-any
  const backend = tf.backend() as any;
  const info = backend.runWebGPUProgram(program, [z, meta, params], "float32", uniforms);
  return tf.engine().makeTensorFromTensorInfo(info) as tf.Tensor1D;
}

const ADAM_MAIN = `
// element i of the flat parameters: the global-norm clip's scale from the sum of squares,
// then Adam; p, m and v sit one after the other in PMV and in the result
fn main(index: i32) {
  let n = uniforms.n;
  if (index >= n) { return; }
  let scale = min(Num[8], Num[2] / (sqrt(SS[0]) + Num[9]));
  let g = G[index] * scale;
  let m = PMV[n + index] * Num[3] + g * Num[4];
  let v = PMV[2 * n + index] * Num[5] + g * g * Num[6];
  result[index] = PMV[index] - (m * Num[0]) / (sqrt(v) * Num[1] + Num[7]);
  result[n + index] = m;
  result[2 * n + index] = v;
}
`;

/** tfjs-backend-webgpu's program for the clip and Adam: one thread per parameter. */
class AdamProgram {
  outputShape: number[];
  shaderKey = "mrmClipAdam";
  dispatchLayout = { x: [0] };
  dispatch: [number, number, number];
  variableNames = ["PMV", "G", "SS", "Num"];
  uniforms = "n : i32,";
  workgroupSize: [number, number, number] = [64, 1, 1];
  size = false;
  constructor(n: number) {
    this.outputShape = [3 * n];
    const groups = Math.ceil(n / 64);
    this.dispatch = [Math.min(groups, 65535), Math.ceil(groups / 65535), 1];
  }
  getUserCode(): string {
    return ADAM_MAIN;
  }
}

/**
 * The outer step's global-norm clip and Adam update in one kernel (tfjs's elementwise
 * ops took about 30 kernels). `pmv` is [parameters, first moments, second moments]
 * (3n values), `g` the flat gradient (n), `numbers` the step's numbers: [step size
 * lr / (1 - beta1^t), 1 / sqrt(1 - beta2^t), clip norm, beta1, 1 - beta1, beta2,
 * 1 - beta2, eps, 1, 1e-6]. Returns the updated [parameters, moments] (3n); the clip
 * scales g by min(1, clip / (|g| + 1e-6)), as clipGlobalNorm does.
 */
export function clipAdamGpu(pmv: tf.Tensor, g: tf.Tensor, numbers: tf.Tensor): tf.Tensor1D {
  const n = g.size;
  if (pmv.size !== 3 * n) throw new RangeError(`clipAdamGpu: ${pmv.size} values for ${n} parameters (want 3n)`);
  return tf.tidy(() => {
    const ss = tf.sum(tf.square(g));
    // deno-lint-ignore no-explicit-any
    const backend = tf.backend() as any;
    const info = backend.runWebGPUProgram(new AdamProgram(n), [pmv, g, ss, numbers], "float32", [
      { type: "int32", data: [n] },
    ]);
    return tf.engine().makeTensorFromTensorInfo(info) as tf.Tensor1D;
  });
}

/** The clip and Adam in one workgroup, the step's numbers read from the packed int32 upload. */
class ClipAdamPackedProgram {
  outputShape: number[];
  shaderKey = "mrmClipAdamPacked";
  dispatchLayout = { x: [0] };
  dispatch: [number, number, number] = [1, 1, 1];
  variableNames = ["PMV", "G", "Packed"];
  uniforms = "n : i32, numAt : i32,";
  workgroupSize: [number, number, number] = [256, 1, 1];
  size = false;
  constructor(n: number) {
    this.outputShape = [3 * n];
  }
  getUserCode(): string {
    return CLIP_ADAM_PACKED_WGSL;
  }
}

/** The most parameters clipAdamPackedGpu takes (one workgroup walks them all, twice). */
export const CLIP_ADAM_PACKED_MAX = 2 ** 20;

/**
 * clipAdamGpu as one kernel of one workgroup, which also sums the gradient's squares, with
 * the step's numbers (in clipAdamGpu's order) as float32 bits at `numAt` in the int32
 * tensor `packed`. For up to CLIP_ADAM_PACKED_MAX parameters.
 */
export function clipAdamPackedGpu(pmv: tf.Tensor, g: tf.Tensor, packed: tf.Tensor, numAt = 0): tf.Tensor1D {
  const n = g.size;
  if (pmv.size !== 3 * n || n > CLIP_ADAM_PACKED_MAX) {
    throw new RangeError(`clipAdamPackedGpu: ${pmv.size} values for ${n} parameters`);
  }
  // deno-lint-ignore no-explicit-any
  const backend = tf.backend() as any;
  const info = backend.runWebGPUProgram(new ClipAdamPackedProgram(n), [pmv, g, packed], "float32", [
    { type: "int32", data: [n] },
    { type: "int32", data: [numAt] },
  ]);
  return tf.engine().makeTensorFromTensorInfo(info) as tf.Tensor1D;
}

let ready: Promise<void> | undefined;

/** Adam's numbers for the checks below: step size 1, bias correction 1, clip 10, eps 0. */
const CHECK_NUMBERS = [1, 1, 10, 0.9, 0.1, 0.999, 0.001, 0, 1, 1e-6];

/**
 * Runs every training and evaluation kernel once on a tiny input under a validation
 * error scope, once per process (one readback), and checks the values. A WGSL error would
 * otherwise leave a pipeline invalid and every step or evaluation silently without effect;
 * this turns it into an error.
 */
export function kspaceGpuReady(): Promise<void> {
  return ready ??= (async () => {
    // deno-lint-ignore no-explicit-any
    const device = (tf.backend() as any).device as GPUDevice;
    device.pushErrorScope("validation");
    const out = tf.tidy(() => {
      const z = tf.tensor2d([1, 0, 0, 1], [2, 2]), p = tf.tensor1d([0, 0, 0, 0]);
      const step = kspaceGpu(z, tf.tensor1d([0, 1, 1, 1], "int32"), p, {
        k: 2,
        users: 1,
        pairs: 2,
        personal: false,
        innerLr: 1e-3,
        innerSteps: 1,
        firstOrder: false,
        objective: "mean",
        rpoRho: 0.5,
        rpoGamma: 0.1,
        thetaOffset: 0,
        rhoOffset: 2,
      });
      const evaluation = kspaceEvalGpu(z, tf.tensor1d([0, 1, 1, 1, 0, 2], "int32"), p, {
        k: 2,
        users: 1,
        personal: false,
        innerLr: 1e-3,
        innerSteps: 1,
        thetaOffset: 0,
        rhoOffset: 2,
      });
      const numbers = new Int32Array(new Float32Array(CHECK_NUMBERS).buffer);
      // p = 1, m = v = 0, g = 2 unclipped: m = 0.2, v = 0.004, p = 1 - 0.2 / sqrt(0.004)
      const adam = clipAdamGpu(tf.tensor1d([1, 0, 0]), tf.tensor1d([2]), tf.tensor1d(CHECK_NUMBERS));
      const adamPacked = clipAdamPackedGpu(tf.tensor1d([1, 0, 0]), tf.tensor1d([2]), tf.tensor1d(numbers, "int32"));
      // the pair kernels on a store of rows [1, 2] and [0, 5], one pair (row 0 over row 1),
      // W1 = [1, 1]: yd = 0.01 (1 + 2 - 0 - 5) = -0.02; with dz = 3, W1 gradient is 0.03 x [1, -3]
      const store = {
        chunks: [tf.tensor2d([1, 2, 0, 5], [2, 2])],
        rowsPerChunk: 2,
        dim: 2,
        kept: 2,
        total: 2,
        ready: Promise.resolve(),
      };
      const packed = tf.tensor1d(Int32Array.from([...numbers, 0, 1]), "int32");
      const where = { small: 0, width: 1, thetaAt: 0, rhoAt: -1 };
      const yd = projectPairsGpu(store, packed, 10, 1, tf.tensor1d([1, 1]), 0, 1);
      const dz = tf.tensor1d([3, 0, 0]);
      const grad = firstLayerGradGpu(store, packed, 10, 1, dz, where);
      // with Adam on parameters [1, 1]: each moves by 0.1 / sqrt(0.001) against its gradient
      const gradAdam = firstLayerGradAdamGpu(store, packed, 10, 1, dz, tf.tensor1d([1, 1, 0, 0, 0, 0]), where);
      return tf.concat([
        tf.slice(step, [2 * 2 + 2 * 2 + 1], [1]),
        tf.slice(evaluation, [0], [2]),
        tf.slice(adam, [0], [1]),
        tf.slice(adamPacked, [0], [1]),
        tf.reshape(yd, [-1]),
        grad,
        tf.slice(gradAdam, [0], [2]),
      ]);
    });
    const values = await out.data();
    out.dispose();
    const error = await device.popErrorScope();
    const step = 0.1 / Math.sqrt(0.001), adamWant = 1 - 0.2 / Math.sqrt(0.004);
    // the step's one user's loss (> 0; after dz 2 x 2, dTheta, dRho, the objective), the
    // evaluation's counts (test: 1 of 1; validation: 2 of 2), then the values above
    const want = [undefined, 1, 2, adamWant, adamWant, -0.02, 0.03, -0.09, 1 - step, 1 + step];
    const ok = values[0] > 0 &&
      want.every((w, i) => w === undefined || Math.abs(values[i] - w) < 1e-4 * Math.max(1, Math.abs(w)));
    if (error || !ok) {
      ready = undefined;
      throw new Error(
        `the training WGSL kernels failed on this adapter: ${error?.message ?? `outputs ${Array.from(values)}`}`,
      );
    }
  })();
}
