/**
 * User-level evaluation (docs/method.md §4): adapt each user on all train pairs (MRM: a
 * fresh inner Adam on theta; mrm-p: the MAP fit), then score the test pairs; ties are wrong. The one
 * implementation used by training, `test:*`, and the library.
 */
import { adaptWeights, marginAccuracy } from "../model/adapt.ts";
import { softmax } from "../model/kspace.ts";
import { headMatrix } from "../model/head.ts";
import { type MrmParams, numBases } from "../model/params.ts";
import { projectAll, residentStore } from "../model/project.ts";
import { rightCountsOnGpu } from "./gpu.ts";
import { pairFeatures, type UserTask } from "../data/tasks.ts";

/** Accuracy of one user. */
export interface UserResult {
  /** user id */
  id: string;
  /** whether the user is seen (meta-trained on) or unseen */
  group: "seen" | "unseen";
  /** train (support) pairs the user adapted on */
  nTrain: number;
  /** test pairs scored */
  nTest: number;
  /** share of test pairs ranked right */
  accuracy: number;
  /** accuracy on the held-out validation pairs, when the user has any */
  valAccuracy?: number;
}

/** Mean, median and worst-10% mean of a group's per-user accuracies. */
export interface GroupStats {
  /** number of users */
  n: number;
  /** mean accuracy */
  mean: number;
  /** median accuracy */
  median: number;
  /** mean accuracy of the worst 10% of users */
  worst10: number;
}

/** The result of one evaluation. */
export interface EvalResult {
  /** per-user results */
  users: UserResult[];
  /** accuracy over seen users */
  seen: GroupStats;
  /** accuracy over unseen users */
  unseen: GroupStats;
  /** accuracy over all users */
  overall: GroupStats;
  /** validation accuracy of the users with held-out validation pairs (n = 0 when none) */
  val: GroupStats;
}

/** Evaluation settings: the inner loop, and optionally only the first `shots` train pairs. */
export interface EvalOptions {
  /** inner Adam learning rate */
  innerLr: number;
  /** inner Adam steps */
  innerSteps: number;
  /** adapt on only the first `shots` train pairs of each user (few-shot curves) */
  shots?: number;
}

/** Groups per-user results into seen / unseen / overall / validation summaries. */
export function summarize(users: UserResult[]): EvalResult {
  return {
    users,
    seen: groupStats(users.filter((u) => u.group === "seen").map((u) => u.accuracy)),
    unseen: groupStats(users.filter((u) => u.group === "unseen").map((u) => u.accuracy)),
    overall: groupStats(users.map((u) => u.accuracy)),
    val: groupStats(users.filter((u) => u.valAccuracy !== undefined).map((u) => u.valAccuracy!)),
  };
}

/** Summarizes accuracies: mean, median, and the mean of the worst ceil(10%) users. */
export function groupStats(acc: number[]): GroupStats {
  const n = acc.length;
  if (n === 0) return { n: 0, mean: NaN, median: NaN, worst10: NaN };
  const s = [...acc].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / n;
  const median = n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  const w = Math.max(1, Math.ceil(n / 10));
  const worst10 = s.slice(0, w).reduce((a, b) => a + b, 0) / w;
  return { n, mean, median, worst10 };
}

/** Fraction of rows whose margin softmax(theta) . z is strictly positive. */
export function accuracyOf(theta: ArrayLike<number>, z: Float64Array, n: number): number {
  return marginAccuracy(softmax(theta), z, n);
}

/**
 * Evaluates every user of `tasks` against a model, projecting the store once. On webgpu,
 * with the store kept on the GPU, all users are adapted there at once (lib/eval/gpu.ts):
 * one readback, of two counts per user.
 */
export async function evaluate(
  params: MrmParams,
  embeddings: Float32Array,
  tasks: UserTask[],
  opts: EvalOptions,
): Promise<EvalResult> {
  const store = await residentStore(embeddings, params.dim);
  if (store) {
    const trains = tasks.map((t) => opts.shots === undefined ? t.train : t.train.slice(0, opts.shots));
    const right = await rightCountsOnGpu(params, store, tasks, trains, opts, embeddings);
    return summarize(tasks.map((t, u) => {
      const res: UserResult = {
        id: t.id,
        group: t.group,
        nTrain: trains[u].length,
        nTest: t.test.length,
        accuracy: right[2 * u] / t.test.length,
      };
      if (t.val.length) res.valAccuracy = right[2 * u + 1] / t.val.length;
      return res;
    }));
  }
  const y = await projectAll(embeddings, params.dim, params.layers[0]);
  return evaluateProjected(params, y, tasks, opts);
}

/** Evaluation from precomputed first-layer outputs `y` (N x h1). */
export function evaluateProjected(
  params: MrmParams,
  y: Float32Array,
  tasks: UserTask[],
  { innerLr, innerSteps, shots }: EvalOptions,
): EvalResult {
  const h1 = params.layers[0].out, K = numBases(params), head = headMatrix(params);
  return evaluateUsers(tasks, shots, (t, train) => {
    const c = (p: number) => t.chosen[p], r = (p: number) => t.rejected[p];
    const w = adaptWeights(params, pairFeatures(y, h1, head, K, c, r, train).z, train.length, { innerLr, innerSteps });
    return (pos) => marginAccuracy(w, pairFeatures(y, h1, head, K, c, r, pos).z, pos.length);
  });
}

/**
 * The per-user evaluation loop every method shares: `fit` adapts to a user's (first
 * `shots`) train pairs and returns an accuracy function over pair positions, which scores
 * the test pairs and, when the user has any, the validation pairs.
 */
export function evaluateUsers(
  tasks: UserTask[],
  shots: number | undefined,
  fit: (t: UserTask, train: number[]) => (positions: number[]) => number,
): EvalResult {
  return summarize(tasks.map((t) => {
    const train = shots === undefined ? t.train : t.train.slice(0, shots);
    const acc = fit(t, train);
    const res: UserResult = {
      id: t.id,
      group: t.group,
      nTrain: train.length,
      nTest: t.test.length,
      accuracy: acc(t.test),
    };
    if (t.val.length) res.valAccuracy = acc(t.val);
    return res;
  }));
}
