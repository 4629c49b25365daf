/**
 * Data: the embedding store, one user's rows, safetensors, the release's splits and RNG,
 * PRISM and Reddit TLDR preprocessing, downloads and the synthetic generator.
 *
 * @example A user's pairs from a store, ready to adapt a model to
 * ```ts
 * import { loadStore, userPairs, writeSynthetic } from "@mrm/mrm/data";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * await writeSynthetic(`${dir}/store`, { preset: "prism", users: 10, dim: 8, seed: 3 });
 * const store = await loadStore(`${dir}/store`);
 * const user = Object.keys(store.meta)[0];
 * const { chosen, rejected, pairs } = userPairs(store, user, { limit: 4 });
 * assert.equal(chosen.length, pairs.length * store.dim);
 * assert.equal(rejected.length, chosen.length);
 * await Deno.remove(dir, { recursive: true });
 * ```
 * @module
 */
export {
  type EmbeddingStore,
  loadStore,
  type PairEntry,
  type StoreMeta,
  userPairs,
  writeStore,
} from "./lib/store/store.ts";
export { readAll as readSafetensors, writeSafetensors } from "./lib/store/safetensors.ts";
export { type Splits, splitUsers, supportQuery } from "./lib/data/splits.ts";
export { PyRandom } from "./lib/data/rng.ts";
export { md5Mod32 } from "./lib/data/md5.ts";
export { generateSynthetic, type SynthOptions, writeSynthetic } from "./lib/data/synthetic.ts";
export { type Message, type RawPair } from "./lib/data/pairs.ts";
export { prismPairs } from "./lib/data/prism.ts";
export { readBatchRows, readParquetRows, redditPairs } from "./lib/data/reddit.ts";
export { download, hubDatasetUrl } from "./lib/data/download.ts";
export type { Dtype, TensorToWrite } from "./lib/store/safetensors.ts";
export type { SplitOptions, SplitStyle, UserSplit } from "./lib/data/splits.ts";
export type { SynthTruth } from "./lib/data/synthetic.ts";
export type { PairStats } from "./lib/data/pairs.ts";
export type { ComparisonRow } from "./lib/data/reddit.ts";
export type { DownloadOptions } from "./lib/data/download.ts";
export type { SynthOptions as SyntheticOptions } from "./lib/data/synthetic.ts";
