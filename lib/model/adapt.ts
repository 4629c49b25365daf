/**
 * Adaptation of either kind of model to one user's pairs, in K-space: the release MRM's
 * inner Adam on softmax logits, or mrm-p's MAP fit of signed weights.
 */
import { adaptTheta, softmax } from "./kspace.ts";
import { isPersonal, type MrmParams } from "./params.ts";
import { fitUser } from "./personal.ts";

/** Settings of the release MRM's inner loop (mrm-p ignores them: its fit is exact). */
export interface AdaptOptions {
  /** inner Adam learning rate */
  innerLr: number;
  /** inner Adam steps */
  innerSteps: number;
}

/**
 * A user's mixing weights w (K values; the user's reward is w . phi(x)) after adapting
 * to the pair features Z (n x K): softmax of the adapted logits for MRM, the MAP
 * weights for mrm-p.
 */
export function adaptWeights(params: MrmParams, z: Float64Array, n: number, opts: AdaptOptions): Float64Array {
  if (isPersonal(params)) return fitUser({ w0: params.sharedWeight, rho: params.priorLogPrecision }, z, n).w;
  return softmax(adaptTheta(params.sharedWeight, z, n, { lr: opts.innerLr, steps: opts.innerSteps }));
}

/** Fraction of rows of Z (n x K) whose margin w . z is strictly positive (ties are wrong). */
export function marginAccuracy(w: ArrayLike<number>, z: Float64Array, n: number): number {
  const K = w.length;
  let correct = 0;
  for (let p = 0; p < n; p++) {
    let m = 0;
    for (let k = 0; k < K; k++) m += w[k] * z[p * K + k];
    if (m > 0) correct++;
  }
  return correct / n;
}
