/** The single-user workflow (method.md §7): adapt a copy of the model to one user, score pairs. */
import { ConfigError } from "../errors.ts";
import { baseOutputs } from "./head.ts";
import { adaptTheta, softmax } from "./kspace.ts";
import type { MrmParams } from "./params.ts";

/** A meta-trained model with one user's adapted weights. */
export interface UserModel {
  params: MrmParams;
  /** the user's adapted logits (shared_weight after adaptation) */
  theta: Float64Array;
}

function rowsOf(name: string, x: Float32Array, dim: number): number {
  if (x.length % dim !== 0) {
    throw new ConfigError(`${name}: ${x.length} values is not a whole number of rows of H=${dim}`);
  }
  return x.length / dim;
}

/**
 * Adapts `shared_weight` only, with a fresh Adam on the user's (chosen, rejected)
 * embedding rows (each n x H, row-major); the model itself is not changed.
 * @example
 * ```ts
 * import { adaptUser, initParams, scorePairs } from "@mrm/mrm";
 * const model = initParams(4);
 * const user = adaptUser(model, new Float32Array([1, 0, 0, 0]), new Float32Array([0, 1, 0, 0]));
 * const s = scorePairs(user, new Float32Array([1, 0, 0, 0]), new Float32Array([0, 1, 0, 0]));
 * console.log(s.prefersChosen);
 * ```
 */
export function adaptUser(
  params: MrmParams,
  chosen: Float32Array,
  rejected: Float32Array,
  { innerLr = 1e-3, innerSteps = 5 }: { innerLr?: number; innerSteps?: number } = {},
): UserModel {
  const n = rowsOf("chosen", chosen, params.dim);
  if (rowsOf("rejected", rejected, params.dim) !== n) {
    throw new ConfigError("chosen and rejected must have the same number of rows");
  }
  if (n === 0) throw new ConfigError("adaptUser needs at least one (chosen, rejected) pair");
  const c = baseOutputs(params, chosen, n), r = baseOutputs(params, rejected, n);
  const z = new Float64Array(c.length);
  for (let i = 0; i < z.length; i++) z[i] = c[i] - r[i];
  return { params, theta: adaptTheta(params.sharedWeight, z, n, { lr: innerLr, steps: innerSteps }) };
}

/** The user's rewards of embedding rows X (n x H). */
export function scoreRows(user: UserModel, x: Float32Array): Float64Array {
  const n = rowsOf("rows", x, user.params.dim);
  const K = user.theta.length, w = softmax(user.theta), phi = baseOutputs(user.params, x, n);
  const r = new Float64Array(n);
  for (let i = 0; i < n; i++) for (let k = 0; k < K; k++) r[i] += w[k] * phi[i * K + k];
  return r;
}

/** Scores pairs: rewards of chosen and rejected rows and whether the user prefers chosen (strictly). */
export function scorePairs(
  user: UserModel,
  chosen: Float32Array,
  rejected: Float32Array,
): { chosen: Float64Array; rejected: Float64Array; prefersChosen: boolean[] } {
  const c = scoreRows(user, chosen), r = scoreRows(user, rejected);
  if (c.length !== r.length) throw new ConfigError("chosen and rejected must have the same number of rows");
  return { chosen: c, rejected: r, prefersChosen: Array.from(c, (v, i) => v > r[i]) };
}
