/**
 * Comparisons: MRM, mrm-p and the baselines (shared BT, per-user, the true-subspace
 * ceiling, the oracle) on one store, few-shot curves and hyperparameter sweeps. Pulls in
 * tfjs and vega (charts).
 *
 * @example MRM against the shared Bradley-Terry baseline and the true-subspace ceiling on a synthetic store
 * ```ts
 * import { METHODS, runCompare } from "@mrm/mrm/compare";
 * import { initBackend, preset, RunLog } from "@mrm/mrm/train";
 * import { loadStore, writeSynthetic } from "@mrm/mrm/data";
 * import assert from "node:assert/strict";
 *
 * await initBackend("wasm");
 * const dir = await Deno.makeTempDir();
 * const { truth } = await writeSynthetic(`${dir}/store`, { preset: "prism", users: 40, dim: 16, seed: 2 });
 * const store = await loadStore(`${dir}/store`);
 * const config = { ...preset("synthetic"), data: `${dir}/store`, epochs: 2 };
 * const log = new RunLog(true); // quiet: lines go only to files it is attached to
 * const { runs } = await runCompare(store, config, { methods: ["mrm", "bt", "subspace"], seeds: [1], outDir: `${dir}/out`, truth, log });
 * assert.deepEqual(runs.map((r) => r.method), ["mrm", "bt", "subspace"]);
 * assert.ok(METHODS.includes("mrm-p"));
 * // the ceiling fits each user on the true reward directions: no method should beat it by much
 * const acc = Object.fromEntries(runs.map((r) => [r.method, r.result.overall.mean]));
 * assert.ok(acc.subspace >= acc.bt - 0.05 && acc.subspace >= acc.mrm - 0.05);
 * await Deno.remove(dir, { recursive: true });
 * ```
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
