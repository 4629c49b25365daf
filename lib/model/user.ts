/** The single-user workflow (docs/method.md §7): adapt a copy of the model to one user, score pairs. */
import { ConfigError } from "../errors.ts";
import { baseOutputs } from "./head.ts";
import { adaptWeights } from "./adapt.ts";
import type { MrmParams } from "./params.ts";
import { rowCount } from "../util/rows.ts";

/** A meta-trained model with one user's adapted weights. */
export interface UserModel {
  /** the meta-trained model (shared, not copied) */
  params: MrmParams;
  /** the user's mixing weights w after adaptation: reward(x) = w . phi(x) */
  weights: Float64Array;
}

/** Embedding rows: one flat row-major array (n x H), or an array of rows of H values each. */
export type Rows = Float32Array | ArrayLike<number>[];

/**
 * Checks rows at the public boundary and returns them flat: every row must have exactly
 * H values (a list of rows catches a model/encoder width mismatch that a flat array
 * whose length happens to be a multiple of H cannot), and every value must be finite.
 */
function flatRows(name: string, x: Rows, dim: number): { data: Float32Array; n: number } {
  let data: Float32Array;
  if (x instanceof Float32Array) {
    if (x.length % dim !== 0) {
      throw new ConfigError(`${name}: ${x.length} values is not a whole number of rows of H=${dim}`);
    }
    data = x;
  } else {
    data = new Float32Array(x.length * dim);
    x.forEach((row, i) => {
      if (row.length !== dim) {
        throw new ConfigError(`${name}: row ${i} has ${row.length} values, the model has H=${dim}`);
      }
      data.set(row, i * dim);
    });
  }
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw new ConfigError(`${name}: row ${Math.floor(i / dim)} holds a non-finite value (${data[i]})`);
    }
  }
  return { data, n: rowCount(data, dim) };
}

/**
 * Adapts `shared_weight` only, with a fresh Adam on the user's (chosen, rejected)
 * embedding rows; the model itself is not changed. Rows are a list of H-value rows
 * (each checked against the model's H) or one flat row-major n x H array (whose length
 * must be a multiple of H; it cannot reveal a width mismatch when the length happens to be
 * one). Values must be finite, `innerLr` positive, `innerSteps` a non-negative integer.
 * @example
 * ```ts
 * import { adaptUser, loadModel, scorePairs } from "@mrm/mrm";
 * import assert from "node:assert/strict";
 *
 * const { params } = await loadModel("examples/model.safetensors");
 * const a = new Float32Array(params.dim).fill(0.5), b = new Float32Array(params.dim).fill(-0.5);
 * const user = adaptUser(params, a, b, { innerLr: 0.05, innerSteps: 5 });
 * const s = scorePairs(user, [a, b], [b, a]);
 * assert.deepEqual(s.prefersChosen, [s.chosen[0] > s.rejected[0], s.chosen[1] > s.rejected[1]]);
 * assert.throws(() => adaptUser(params, [[1, 2]], [[3, 4]]), /row 0 has 2 values/);
 * ```
 */
export function adaptUser(
  params: MrmParams,
  chosen: Rows,
  rejected: Rows,
  { innerLr = 1e-3, innerSteps = 5 }: { innerLr?: number; innerSteps?: number } = {},
): UserModel {
  if (!(Number.isFinite(innerLr) && innerLr > 0)) {
    throw new ConfigError(`innerLr must be a positive number, got ${innerLr}`);
  }
  if (!(Number.isInteger(innerSteps) && innerSteps >= 0)) {
    throw new ConfigError(`innerSteps must be a non-negative integer, got ${innerSteps}`);
  }
  const c0 = flatRows("chosen", chosen, params.dim), r0 = flatRows("rejected", rejected, params.dim);
  const n = c0.n;
  if (r0.n !== n) throw new ConfigError("chosen and rejected must have the same number of rows");
  if (n === 0) throw new ConfigError("adaptUser needs at least one (chosen, rejected) pair");
  const c = baseOutputs(params, c0.data, n), r = baseOutputs(params, r0.data, n);
  const z = new Float64Array(c.length);
  for (let i = 0; i < z.length; i++) z[i] = c[i] - r[i];
  return { params, weights: adaptWeights(params, z, n, { innerLr, innerSteps }) };
}

/** The user's rewards of embedding rows X (n x H). */
export function scoreRows(user: UserModel, x: Rows): Float64Array {
  const { data, n } = flatRows("rows", x, user.params.dim);
  const K = user.weights.length, w = user.weights, phi = baseOutputs(user.params, data, n);
  const r = new Float64Array(n);
  for (let i = 0; i < n; i++) for (let k = 0; k < K; k++) r[i] += w[k] * phi[i * K + k];
  return r;
}

/** Scores pairs: rewards of chosen and rejected rows and whether the user prefers chosen (strictly). */
export function scorePairs(
  user: UserModel,
  chosen: Rows,
  rejected: Rows,
): { chosen: Float64Array; rejected: Float64Array; prefersChosen: boolean[] } {
  const c = scoreRows(user, chosen), r = scoreRows(user, rejected);
  if (c.length !== r.length) throw new ConfigError("chosen and rejected must have the same number of rows");
  return { chosen: c, rejected: r, prefersChosen: Array.from(c, (v, i) => v > r[i]) };
}
