/**
 * mrm — Meta Reward Modeling for personalized reward models, in Deno.
 *
 * Load a meta-trained checkpoint, adapt it to one user from a few
 * (chosen, rejected) embedding pairs, and score new pairs:
 *
 * @example
 * ```ts
 * import { adaptUser, initParams, scorePairs } from "@mrm/mrm";
 * // a real model: const { params } = await loadCheckpoint("output/prism/<run>/best.safetensors");
 * const params = initParams(4, { hiddenSizes: [2] });
 * const user = adaptUser(params, new Float32Array([1, 0, 0, 0]), new Float32Array([0, 1, 0, 0]), { innerLr: 1e-3, innerSteps: 5 });
 * const { chosen, rejected } = scorePairs(user, new Float32Array([0, 0, 1, 0]), new Float32Array([0, 0, 0, 1]));
 * console.log(chosen[0] - rejected[0]);
 * ```
 * @module
 */
export { adaptUser, type Rows, scorePairs, scoreRows, type UserModel } from "./lib/model/user.ts";
export { cloneParams, initParams, isPersonal, type Layer, type MrmParams } from "./lib/model/params.ts";
export { adaptWeights, marginAccuracy } from "./lib/model/adapt.ts";
export { type Fit, fitUser, mapLoss, type PersonalGrad, personalGrad, type Prior } from "./lib/model/personal.ts";
export { initPersonal, type PersonalInitOptions } from "./lib/train/personal_init.ts";
export { evaluateSubspace, fitSubspace, type SubspaceModel } from "./lib/baselines/subspace.ts";
export { adaptTheta, btLoss, type InnerOptions, type TaskGrad, taskGrad } from "./lib/model/kspace.ts";
export { loadCheckpoint, saveCheckpoint } from "./lib/run/checkpoint.ts";
export { type EmbeddingStore, loadStore, type PairEntry, type StoreMeta, writeStore } from "./lib/store/store.ts";
export { readAll as readSafetensors, writeSafetensors } from "./lib/store/safetensors.ts";
export { type Splits, splitUsers, supportQuery } from "./lib/data/splits.ts";
export { md5Mod32, PyRandom } from "./lib/data/rng.ts";
export { generateSynthetic, type SynthOptions, writeSynthetic } from "./lib/data/synthetic.ts";
export { type EvalResult, evaluate, groupStats } from "./lib/eval/evaluate.ts";
export { prepareTasks, type RunSummary, runTraining } from "./lib/run/run.ts";
export { MRM_P_DEFAULTS, personalConfig, preset, PRESETS, type TrainConfig } from "./lib/presets.ts";
export { type BackendName, initBackend } from "./lib/backend.ts";
export { ConfigError, FormatError } from "./lib/errors.ts";
export { type Encoded, type EncoderOptions, loadRewardHead, RewardEncoder } from "./lib/encoder/encoder.ts";
export { type ChatTokenizer, loadChatTokenizer } from "./lib/encoder/tokenizer.ts";
export { encodeStore, mergeStores, planStore, shardPairs, type StorePlan } from "./lib/encoder/writer.ts";
export { type Message, type RawPair } from "./lib/data/pairs.ts";
export { prismPairs } from "./lib/data/prism.ts";
export { readBatchRows, readParquetRows, redditPairs } from "./lib/data/reddit.ts";
export { download, hubDatasetUrl } from "./lib/data/download.ts";
export { type Method, METHODS, runCompare } from "./lib/compare/compare.ts";
export { runSweep } from "./lib/compare/sweep.ts";
