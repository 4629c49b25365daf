/**
 * Meta-training and evaluation: parameters, the K-space MAML math, mrm-p, training runs,
 * checkpoints, presets and the tfjs backend. Pulls in tfjs.
 *
 * @example Meta-train on a synthetic store and evaluate
 * ```ts
 * import { evaluate, initBackend, loadCheckpoint, prepareTasks, preset, runTraining } from "@mrm/mrm/train";
 * import { loadStore, writeSynthetic } from "@mrm/mrm/data";
 * import assert from "node:assert/strict";
 *
 * await initBackend("wasm");
 * const dir = await Deno.makeTempDir();
 * await writeSynthetic(`${dir}/store`, { preset: "prism", users: 40, dim: 16, seed: 1 });
 * const store = await loadStore(`${dir}/store`);
 * const config = { ...preset("synthetic"), data: `${dir}/store`, epochs: 2 };
 * const summary = await runTraining(store, config, { outDir: `${dir}/run` });
 * const { params } = await loadCheckpoint(`${dir}/run/best.safetensors`);
 * const { seen } = prepareTasks(store, config);
 * const result = await evaluate(params, store.embeddings, seen, { innerLr: config.innerLr, innerSteps: config.evalInnerEpochs });
 * assert.equal(result.overall.n, seen.length);
 * assert.ok(result.overall.mean > 0.5 && summary.users.seen === seen.length);
 * await Deno.remove(dir, { recursive: true });
 * ```
 * @module
 */
export { cloneParams, initParams, isPersonal, type Layer, type MrmParams } from "./lib/model/params.ts";
export { adaptWeights, marginAccuracy } from "./lib/model/adapt.ts";
export { type Fit, fitUser, mapLoss, type PersonalGrad, personalGrad, type Prior } from "./lib/model/personal.ts";
export { initPersonal, MAX_FIT_DIM, type PersonalInitOptions } from "./lib/train/personal_init.ts";
export { fitLowRank, type LowRankFit, type LowRankOptions, type PairRows } from "./lib/train/lowrank.ts";
export { adaptTheta, btLoss, type InnerOptions, type TaskGrad, taskGrad } from "./lib/model/kspace.ts";
export { loadCheckpoint, saveCheckpoint } from "./lib/run/checkpoint.ts";
export { type EvalResult, evaluate, groupStats } from "./lib/eval/evaluate.ts";
export { prepareTasks, type RunSummary, runTraining } from "./lib/run/run.ts";
export { MRM_P_DEFAULTS, personalConfig, preset, PRESETS, type TrainConfig } from "./lib/presets.ts";
export { type BackendName, initBackend } from "./lib/backend.ts";
export type { AdaptOptions } from "./lib/model/adapt.ts";
export type { EvalOptions, GroupStats, UserResult } from "./lib/eval/evaluate.ts";
export type { UserTask } from "./lib/data/tasks.ts";
export type { EpochReport, RunOptions } from "./lib/run/run.ts";
export type { EmbeddingStore } from "./lib/store/store.ts";
export type { SplitOptions, Splits, SplitStyle, UserSplit } from "./lib/data/splits.ts";
export type { PairEntry, StoreMeta } from "./lib/store/store.ts";
export { RunLog } from "./lib/run/log.ts";
