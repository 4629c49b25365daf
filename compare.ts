/**
 * Comparisons: MRM, mrm-p and the baselines (shared BT, per-user, the true-subspace
 * ceiling, the oracle) on one store, few-shot curves and hyperparameter sweeps. Pulls in
 * tfjs and vega (charts).
 * @module
 */
export { type Method, METHODS, runCompare } from "./lib/compare/compare.ts";
export { runSweep } from "./lib/compare/sweep.ts";
export { evaluateSubspace, fitSubspace, type SubspaceModel } from "./lib/baselines/subspace.ts";
