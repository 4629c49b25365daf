/** The Robust Personalization Objective (docs/method.md §3) and its gradient. */
import { sigmoid } from "../model/kspace.ts";

/** `torch.quantile(L, q)` with linear interpolation, and which entries it reads. */
export function quantile(l: ArrayLike<number>, q: number): { value: number; lo: number; hi: number; frac: number } {
  const idx = Array.from({ length: l.length }, (_, i) => i).sort((a, b) => l[a] - l[b] || a - b);
  const pos = q * (l.length - 1);
  const loR = Math.floor(pos), hiR = Math.min(loR + 1, l.length - 1), frac = pos - loR;
  const lo = idx[loR], hi = idx[hiR];
  return { value: l[lo] + frac * (l[hi] - l[lo]), lo, hi, frac };
}

/**
 * objective = sum_i a_i L_i with a_i = sigmoid((L_i - tau) / gamma), tau the
 * (1 - rho) quantile, not detached; gamma <= 0 uses the detached hard mask
 * [L_i > tau]. Returns the objective and dObjective/dL_i.
 */
export function rpo(losses: ArrayLike<number>, rho: number, gamma: number): { objective: number; coef: Float64Array } {
  const B = losses.length;
  const q = quantile(losses, 1 - rho);
  const coef = new Float64Array(B);
  let objective = 0;
  if (gamma <= 0) {
    for (let i = 0; i < B; i++) {
      const m = losses[i] > q.value ? 1 : 0;
      coef[i] = m;
      objective += m * losses[i];
    }
    return { objective, coef };
  }
  // d obj / d tau = -sum_i L_i a_i (1 - a_i) / gamma
  let dTau = 0;
  for (let i = 0; i < B; i++) {
    const a = sigmoid((losses[i] - q.value) / gamma);
    objective += a * losses[i];
    const da = losses[i] * a * (1 - a) / gamma;
    coef[i] = a + da;
    dTau -= da;
  }
  coef[q.lo] += dTau * (1 - q.frac);
  coef[q.hi] += dTau * q.frac;
  return { objective, coef };
}
