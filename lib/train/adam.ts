/** The outer optimizer: PyTorch's Adam (no weight decay) over float32 arrays. */

/** Serializable Adam state: first and second moments per array, and the step count. */
export interface AdamState {
  step: number;
  m: Float32Array[];
  v: Float32Array[];
}

/** A fresh state for arrays of the given sizes. */
export function adamInit(sizes: number[]): AdamState {
  return { step: 0, m: sizes.map((n) => new Float32Array(n)), v: sizes.map((n) => new Float32Array(n)) };
}

/** One Adam step in place: params[i] -= lr * mhat / (sqrt(vhat) + eps). */
export function adamUpdate(
  state: AdamState,
  params: Float32Array[],
  grads: ArrayLike<number>[],
  lr: number,
  { beta1 = 0.9, beta2 = 0.999, eps = 1e-8 }: { beta1?: number; beta2?: number; eps?: number } = {},
): void {
  state.step++;
  const bc1 = 1 - beta1 ** state.step, bc2 = Math.sqrt(1 - beta2 ** state.step);
  const stepSize = lr / bc1;
  for (let a = 0; a < params.length; a++) {
    const p = params[a], g = grads[a], m = state.m[a], v = state.v[a];
    for (let i = 0; i < p.length; i++) {
      const gi = g[i];
      m[i] = beta1 * m[i] + (1 - beta1) * gi;
      v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
      p[i] -= stepSize * m[i] / (Math.sqrt(v[i]) / bc2 + eps);
    }
  }
}

/** Scales grads in place so their global L2 norm is at most maxNorm; returns the norm before. */
export function clipGlobalNorm(grads: Float64Array[], maxNorm: number): number {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  const norm = Math.sqrt(s);
  const c = maxNorm / (norm + 1e-6);
  if (c < 1) { for (const g of grads) for (let i = 0; i < g.length; i++) g[i] *= c; }
  return norm;
}
