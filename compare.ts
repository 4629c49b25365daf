/**
 * Comparisons: MRM, mrm-p and the baselines (shared BT, per-user, the true-subspace
 * ceiling, the oracle) on one store, few-shot curves and hyperparameter sweeps. Pulls in
 * tfjs and vega (charts).
 * @module
 */
export { type Method, METHODS, runCompare } from "./lib/compare/compare.ts";
export { runSweep } from "./lib/compare/sweep.ts";
export { evaluateSubspace, fitSubspace, type SubspaceModel } from "./lib/baselines/subspace.ts";
export type { CompareOptions, CompareResult } from "./lib/compare/compare.ts";
export type { GridAxis, SweepResult } from "./lib/compare/sweep.ts";
export type { EmbeddingStore } from "./lib/store/store.ts";
export type { TrainConfig } from "./lib/presets.ts";
export type { RunLog } from "./lib/run/log.ts";
export type { SynthTruth } from "./lib/data/synthetic.ts";
export type { EvalResult, GroupStats, UserResult } from "./lib/eval/evaluate.ts";
export type { UserTask } from "./lib/data/tasks.ts";
export type { MethodRun } from "./lib/compare/compare.ts";
export type { SweepRow } from "./lib/compare/sweep.ts";
export type { PairEntry, StoreMeta } from "./lib/store/store.ts";
export type { SplitStyle } from "./lib/data/splits.ts";
export type { SynthOptions } from "./lib/data/synthetic.ts";
