/**
 * mrm — Meta Reward Modeling for personalized reward models, in Deno.
 *
 * Load a meta-trained checkpoint, adapt it to one user from a few
 * (chosen, rejected) embedding pairs, and score new pairs:
 *
 * @example
 * ```ts
 * import { adaptUser, initParams, scorePairs } from "./mod.ts";
 * // a real model: const { params } = await loadCheckpoint("output/prism/<run>/best.safetensors");
 * const params = initParams(4, { hiddenSizes: [2] });
 * const user = adaptUser(params, new Float32Array([1, 0, 0, 0]), new Float32Array([0, 1, 0, 0]), { innerLr: 1e-3, innerSteps: 5 });
 * const { chosen, rejected } = scorePairs(user, new Float32Array([0, 0, 1, 0]), new Float32Array([0, 0, 0, 1]));
 * console.log(chosen[0] - rejected[0]);
 * ```
 * @module
 */
export { adaptUser, scorePairs, scoreRows, type UserModel } from "./lib/model/user.ts";
export { cloneParams, initParams, type Layer, type MrmParams } from "./lib/model/params.ts";
export { adaptTheta, btLoss, type InnerOptions, type TaskGrad, taskGrad } from "./lib/model/kspace.ts";
export { loadCheckpoint, saveCheckpoint } from "./lib/run/checkpoint.ts";
export { type EmbeddingStore, loadStore, type PairEntry, type StoreMeta, writeStore } from "./lib/store/store.ts";
export { readAll as readSafetensors, writeSafetensors } from "./lib/store/safetensors.ts";
export { type Splits, splitUsers, supportQuery } from "./lib/data/splits.ts";
export { md5Mod32, PyRandom } from "./lib/data/rng.ts";
export { generateSynthetic, type SynthOptions, writeSynthetic } from "./lib/data/synthetic.ts";
export { type EvalResult, evaluate, groupStats } from "./lib/eval/evaluate.ts";
export { prepareTasks, type RunSummary, runTraining } from "./lib/run/run.ts";
export { preset, PRESETS, type TrainConfig } from "./lib/presets.ts";
export { type BackendName, initBackend } from "./lib/backend.ts";
export { ConfigError, FormatError } from "./lib/errors.ts";
