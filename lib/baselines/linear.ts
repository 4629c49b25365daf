/**
 * `bt` and `lore`: linear rewards over embeddings trained on the seen users' train
 * pairs. `bt` is one shared Bradley–Terry reward r(x) = v . 0.01x. `lore` (LoRe,
 * arXiv 2504.14439) learns a shared basis V (K x H) and per-user simplex weights
 * softmax(theta_u) jointly; an unseen user fits only its weights with V frozen.
 * Both use the MRM parametrization (input scale 0.01), so K and H mean the same.
 */
import type { UserTask } from "../data/tasks.ts";
import { type EvalOptions, type EvalResult, summarize, type UserResult } from "../eval/evaluate.ts";
import { accuracyOf } from "../eval/evaluate.ts";
import { PyRandom } from "../data/rng.ts";
import { adaptTheta, sigmoid, softmax } from "../model/kspace.ts";
import { INPUT_SCALE, type Layer } from "../model/params.ts";
import { firstLayerTensor, projectAll, RowBlock } from "../model/project.ts";
import { adamInit, adamUpdate } from "../train/adam.ts";
import { gatherBatch, stepScratch, taskRows } from "../train/step.ts";

/** A trained linear reward: basis V and, for LoRe, each seen user's logits. */
export interface LinearModel {
  basis: Layer;
  /** per seen user logits (LoRe); empty for bt */
  thetas: Map<string, Float64Array>;
  personalized: boolean;
}

/** Training settings. */
export interface LinearOptions {
  /** number of basis functions (bt: 1) */
  k: number;
  /** per-user weights (LoRe) or one shared reward (bt) */
  personalized: boolean;
  /** @default 30 */
  epochs?: number;
  /** Adam learning rate of V and theta @default 1e-2 */
  lr?: number;
  /** Adam learning rate of the per-user logits (LoRe) @default 0.1 */
  thetaLr?: number;
  /** users per step @default 8 */
  usersPerStep?: number;
  seed?: number;
}

/** Trains bt or LoRe on the seen users' train pairs (pooled BT loss per step). */
export async function trainLinear(
  embeddings: Float32Array,
  dim: number,
  seen: UserTask[],
  { k, personalized, epochs = 30, lr = 1e-2, thetaLr = 0.1, usersPerStep = 8, seed = 42 }: LinearOptions,
): Promise<LinearModel> {
  const rng = new PyRandom(seed + 99);
  const bound = 1 / Math.sqrt(dim);
  const basis: Layer = {
    out: k,
    in: dim,
    weight: Float32Array.from({ length: k * dim }, () => (2 * rng.random() - 1) * bound),
  };
  const thetas = new Map(seen.map((t) => [t.id, new Float64Array(k)]));
  const thetaAdam = new Map(seen.map((t) => [t.id, adamInit([k])]));
  const rows = seen.map(taskRows);
  const scratch = stepScratch(rows, usersPerStep, dim);
  const vAdam = adamInit([k * dim]);
  for (let e = 0; e < epochs; e++) {
    const order = rng.shuffle([...seen.keys()]);
    for (let i = 0; i < order.length; i += usersPerStep) {
      const batch = order.slice(i, i + usersPerStep);
      const { offsets, nRows: n } = gatherBatch(embeddings, dim, batch.map((u) => rows[u]), scratch);
      const block = new RowBlock(scratch.subarray(0, n * dim), n, dim);
      const w1 = firstLayerTensor(basis);
      const y = await block.project(w1);
      w1.dispose();
      const nPairs = batch.reduce((s, u) => s + seen[u].train.length, 0);
      const coef = new Float32Array(k * n);
      for (let b = 0; b < batch.length; b++) {
        const t = seen[batch[b]], r = rows[batch[b]], o = offsets[b];
        const theta = thetas.get(t.id)!;
        const w = personalized ? softmax(theta) : new Float64Array(k).fill(1);
        const u = new Float64Array(k);
        for (const p of t.train) {
          const rc = o + r.localChosen[p], rr = o + r.localRejected[p];
          let m = 0;
          const z = new Float64Array(k);
          for (let j = 0; j < k; j++) {
            z[j] = y[rc * k + j] - y[rr * k + j];
            m += w[j] * z[j];
          }
          const dm = -sigmoid(-m) / nPairs;
          for (let j = 0; j < k; j++) {
            u[j] += dm * z[j];
            coef[j * n + rc] += dm * w[j] * INPUT_SCALE;
            coef[j * n + rr] -= dm * w[j] * INPUT_SCALE;
          }
        }
        if (personalized) {
          let wu = 0;
          for (let j = 0; j < k; j++) wu += w[j] * u[j];
          const g = Float64Array.from(w, (wj, j) => wj * (u[j] - wu));
          const th32 = Float32Array.from(theta);
          adamUpdate(thetaAdam.get(t.id)!, [th32], [g], thetaLr);
          theta.set(th32);
        }
      }
      const gV = await block.weightGrad(coef, k);
      block.dispose();
      adamUpdate(vAdam, [basis.weight], [gV], lr);
    }
  }
  return { basis, thetas: personalized ? thetas : new Map(), personalized };
}

/** Settings for fitting an unseen user's weights with the basis frozen. */
export interface FitOptions {
  /** @default 0.1 */
  lr?: number;
  /** @default 100 */
  steps?: number;
}

/**
 * Evaluates a linear model: bt scores pairs directly; LoRe uses each seen user's
 * learned weights and fits an unseen user's weights on its train pairs (or the
 * first `shots` of them).
 */
export async function evaluateLinear(
  model: LinearModel,
  embeddings: Float32Array,
  tasks: UserTask[],
  { shots }: Pick<EvalOptions, "shots"> = {},
  { lr = 0.1, steps = 100 }: FitOptions = {},
): Promise<EvalResult> {
  const k = model.basis.out, dim = model.basis.in;
  const y = await projectAll(embeddings, dim, model.basis);
  const zOf = (t: UserTask, pos: number[]) => {
    const z = new Float64Array(pos.length * k);
    pos.forEach((p, i) => {
      for (let j = 0; j < k; j++) z[i * k + j] = y[t.chosen[p] * k + j] - y[t.rejected[p] * k + j];
    });
    return z;
  };
  const users: UserResult[] = tasks.map((t) => {
    const train = shots === undefined ? t.train : t.train.slice(0, shots);
    let theta: ArrayLike<number> = new Float64Array(k);
    if (model.personalized) {
      const learned = shots === undefined ? model.thetas.get(t.id) : undefined;
      theta = learned ?? adaptTheta(new Float64Array(k), zOf(t, train), train.length, { lr, steps });
    }
    const res: UserResult = {
      id: t.id,
      group: t.group,
      nTrain: train.length,
      nTest: t.test.length,
      accuracy: accuracyOf(theta, zOf(t, t.test), t.test.length),
    };
    if (t.val.length) res.valAccuracy = accuracyOf(theta, zOf(t, t.val), t.val.length);
    return res;
  });
  return summarize(users);
}
