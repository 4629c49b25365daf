/**
 * `subspace`: the personalisation ceiling on synthetic stores. Each user is fitted by an
 * L2-regularised Bradley–Terry logistic regression over the generator's true latent
 * coordinates c_l(x) = d_l . x / scale of the pair differences (so the model knows the
 * right subspace and has to learn only the user's weights), regularised towards the fit
 * pooled over the seen users' train pairs. The strength is chosen by two-fold
 * validation on the seen users' train pairs, never on test pairs.
 */
import type { SynthTruth } from "../data/synthetic.ts";
import type { UserTask } from "../data/tasks.ts";
import { ConfigError } from "../errors.ts";
import { type EvalResult, evaluateUsers } from "../eval/evaluate.ts";
import { marginAccuracy } from "../model/adapt.ts";
import { fitUser } from "../model/personal.ts";

/** The strengths tried (prior precision on each weight). */
export const SUBSPACE_STRENGTHS = [0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100];

/** The fitted ceiling: pooled weights and the chosen strength, with the validation scores. */
export interface SubspaceModel {
  /** the true latent reward directions */
  directions: Float32Array[];
  /** the generator's reward scale */
  scale: number;
  /** the pooled fit over seen users (the prior mean) */
  pooled: Float64Array;
  /** the prior strength chosen by validation */
  strength: number;
  /** validation accuracy of each candidate strength */
  validation: { strength: number; accuracy: number }[];
}

/** Latent coordinates of the pair differences at `positions` (n x L). */
function latentDiffs(
  m: { directions: Float32Array[]; scale: number },
  embeddings: Float32Array,
  dim: number,
  t: UserTask,
  positions: number[],
): Float64Array {
  const L = m.directions.length, z = new Float64Array(positions.length * L);
  positions.forEach((p, i) => {
    const c = t.chosen[p] * dim, r = t.rejected[p] * dim;
    for (let l = 0; l < L; l++) {
      const d = m.directions[l];
      let s = 0;
      for (let h = 0; h < dim; h++) s += d[h] * (embeddings[c + h] - embeddings[r + h]);
      z[i * L + l] = s / m.scale;
    }
  });
  return z;
}

function prior(w0: Float64Array, strength: number) {
  return { w0, rho: new Float64Array(w0.length).fill(Math.log(strength)) };
}

/** Fits the pooled weights and chooses the strength on the seen users (the truth must hold directions). */
export function fitSubspace(truth: SynthTruth, embeddings: Float32Array, dim: number, seen: UserTask[]): SubspaceModel {
  if (!truth.directions || !truth.scale) {
    throw new ConfigError(
      "subspace: the truth file records no latent directions (written by an older toolkit); " +
        "regenerate the store with deno task synth",
    );
  }
  if (truth.directions[0].length !== dim) {
    throw new ConfigError(
      `subspace: the truth's directions have ${truth.directions[0].length} values, the store H=${dim}`,
    );
  }
  const base = { directions: truth.directions.map((d) => Float32Array.from(d)), scale: truth.scale };
  const L = base.directions.length;
  const feats = seen.map((t) => latentDiffs(base, embeddings, dim, t, t.train));
  const total = seen.reduce((s, t) => s + t.train.length, 0);
  const all = new Float64Array(total * L);
  let at = 0;
  feats.forEach((f) => {
    all.set(f, at);
    at += f.length;
  });
  const pooled = fitUser(prior(new Float64Array(L), 1), all, total).w;
  // two folds per seen user: alternate positions of the user's train pairs
  const validation = SUBSPACE_STRENGTHS.map((strength) => {
    let sum = 0, users = 0;
    seen.forEach((t, u) => {
      const n = t.train.length;
      if (n < 2) return;
      const f = feats[u];
      const fold = (parity: number) => {
        const idx = [...Array(n).keys()].filter((i) => i % 2 === parity);
        const z = new Float64Array(idx.length * L);
        idx.forEach((i, j) => z.set(f.subarray(i * L, (i + 1) * L), j * L));
        return { z, n: idx.length };
      };
      const a = fold(0), b = fold(1);
      const wa = fitUser(prior(pooled, strength), a.z, a.n).w, wb = fitUser(prior(pooled, strength), b.z, b.n).w;
      sum += (marginAccuracy(wa, b.z, b.n) * b.n + marginAccuracy(wb, a.z, a.n) * a.n) / n;
      users++;
    });
    return { strength, accuracy: users ? sum / users : NaN };
  });
  // the best validation accuracy; ties go to the stronger prior
  let best = validation[0];
  for (const v of validation) if (v.accuracy >= best.accuracy) best = v;
  return { ...base, pooled, strength: best.strength, validation };
}

/** Evaluates every user: fit on the (first `shots`) train pairs, score the test pairs. */
export function evaluateSubspace(
  model: SubspaceModel,
  embeddings: Float32Array,
  dim: number,
  tasks: UserTask[],
  { shots }: { shots?: number } = {},
): EvalResult {
  return evaluateUsers(tasks, shots, (t, train) => {
    const w =
      fitUser(prior(model.pooled, model.strength), latentDiffs(model, embeddings, dim, t, train), train.length).w;
    return (pos) => marginAccuracy(w, latentDiffs(model, embeddings, dim, t, pos), pos.length);
  });
}
