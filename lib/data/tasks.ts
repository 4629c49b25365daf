/** Users as tasks: the split's index lists resolved to embedding rows. */
import type { EmbeddingStore, PairEntry } from "../store/store.ts";
import type { Splits } from "./splits.ts";

/** One user with train/test positions and each entry's chosen/rejected row. */
export interface UserTask {
  /** user id */
  id: string;
  /** whether the user is seen (meta-trained on) or unseen */
  group: "seen" | "unseen";
  /** index of the user in its group's list (seeds the support/query split) */
  index: number;
  /** the user's pairs, in store order */
  entries: PairEntry[];
  /** positions (in `entries`) of the train pairs */
  train: number[];
  /** positions (in `entries`) of the test pairs */
  test: number[];
  /** validation positions held out of train (empty unless a holdout is configured) */
  val: number[];
  /** each entry's chosen embedding row */
  chosen: Int32Array;
  /** each entry's rejected embedding row */
  rejected: Int32Array;
}

/** Builds the tasks of a split; seen users first, in the split's order. */
export function buildTasks(store: EmbeddingStore, splits: Splits): { seen: UserTask[]; unseen: UserTask[] } {
  const make = (id: string, index: number): UserTask => {
    const entries = store.meta[id];
    const s = splits.users[id];
    return {
      id,
      group: s.group,
      index,
      entries,
      train: s.train,
      test: s.test,
      val: [],
      chosen: Int32Array.from(entries, (e) => e.chosen_idx),
      rejected: Int32Array.from(entries, (e) => e.rejected_idx),
    };
  };
  return { seen: splits.seen.map(make), unseen: splits.unseen.map(make) };
}

/**
 * z-rows (n x K) for the given positions from per-row first-layer outputs Y
 * (rows x h1) and the head B (K x h1): z = B (Y[chosen] - Y[rejected]).
 */
export function pairFeatures(
  y: Float32Array,
  h1: number,
  head: Float64Array,
  k: number,
  chosenRow: (pos: number) => number,
  rejectedRow: (pos: number) => number,
  positions: number[],
): { z: Float64Array; yd: Float64Array } {
  const n = positions.length;
  const yd = new Float64Array(n * h1), z = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    const c = chosenRow(positions[i]) * h1, r = rejectedRow(positions[i]) * h1;
    for (let j = 0; j < h1; j++) yd[i * h1 + j] = y[c + j] - y[r + j];
    for (let a = 0; a < k; a++) {
      let s = 0;
      for (let j = 0; j < h1; j++) s += head[a * h1 + j] * yd[i * h1 + j];
      z[i * k + a] = s;
    }
  }
  return { z, yd };
}
