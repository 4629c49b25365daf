/**
 * User splits of docs/method.md §2: seen/unseen users, per-user train/test, and the
 * per-epoch support/query split, bit-exact with the release's Python.
 */
import type { PairEntry, StoreMeta } from "../store/store.ts";
import { PyRandom } from "./rng.ts";
import { md5Mod32 } from "./md5.ts";

/** How a dataset splits each user's pairs into train and test. */
export type SplitStyle = "prism" | "reddit";

/** Settings that decide the split. */
export interface SplitOptions {
  /** @default 42 */
  /** seed of the user order @default 42 */
  seed?: number;
  /** cap on train conversations (PRISM) or pairs (Reddit) of seen users; -1 = none. @default -1 */
  seenTrainLimit?: number;
  /** same for unseen users. @default -1 */
  unseenTrainLimit?: number;
}

/** One user's split: positions into that user's entry list. */
export interface UserSplit {
  /** whether the user is seen (meta-trained on) or unseen */
  group: "seen" | "unseen";
  /** positions (in `entries`) of the train pairs */
  train: number[];
  /** positions (in `entries`) of the test pairs */
  test: number[];
}

/** The whole split, in the JSON form of docs/formats.md. */
export interface Splits {
  /** the seed the splits were drawn with */
  seed: number;
  /** seen (meta-training) users */
  seen: string[];
  /** unseen (held-out) users */
  unseen: string[];
  /** each user's pair indices by split */
  users: Record<string, UserSplit>;
}

/** Python's `sorted()` order for strings: by code point, not UTF-16 unit. */
export function comparePy(a: string, b: string): number {
  const x = Array.from(a), y = Array.from(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0)! - y[i].codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

function conversationKey(e: PairEntry, pos: number): string {
  const c = e.conversation_id;
  if (c === undefined || c === null) return `#pos:${pos}`;
  return `${typeof c}:${c}`;
}

/** Groups positions by conversation in first-appearance order (a Python dict). */
export function groupByConversation(entries: PairEntry[], positions: number[]): number[][] {
  const groups = new Map<string, number[]>();
  for (const p of positions) {
    const k = conversationKey(entries[p], p);
    let g = groups.get(k);
    if (!g) groups.set(k, g = []);
    g.push(p);
  }
  return [...groups.values()];
}

/** Infers the split style: Reddit-style stores carry a `split` field. */
export function detectSplitStyle(meta: StoreMeta): SplitStyle {
  for (const list of Object.values(meta)) {
    if (list.some((e) => e.split !== undefined)) return "reddit";
  }
  return "prism";
}

/** Computes seen/unseen users and every user's train/test positions. */
export function splitUsers(
  meta: StoreMeta,
  style: SplitStyle,
  { seed = 42, seenTrainLimit = -1, unseenTrainLimit = -1 }: SplitOptions = {},
): Splits {
  const ids = Object.keys(meta).sort(comparePy);
  new PyRandom(seed).shuffle(ids);
  const half = Math.floor(ids.length / 2);
  const users: Record<string, UserSplit> = {};
  const seen: string[] = [], unseen: string[] = [];
  ids.forEach((uid, i) => {
    const group = i < half ? "seen" : "unseen";
    const limit = group === "seen" ? seenTrainLimit : unseenTrainLimit;
    const entries = meta[uid];
    const rng = new PyRandom(seed + md5Mod32(uid));
    let train: number[], test: number[];
    if (style === "prism") {
      const convs = groupByConversation(entries, entries.map((_, p) => p));
      rng.shuffle(convs);
      const nTrain = Math.floor(convs.length / 2);
      let trainConvs = convs.slice(0, nTrain);
      if (limit >= 0) trainConvs = trainConvs.slice(0, limit);
      train = trainConvs.flat();
      test = convs.slice(nTrain).flat();
    } else {
      train = [];
      test = [];
      entries.forEach((e, p) => (e.split === "val" ? test : e.split === "train" ? train : []).push(p));
      rng.shuffle(train);
      if (limit >= 0) train = train.slice(0, limit);
    }
    if (train.length === 0 || test.length === 0) return;
    users[uid] = { group, train, test };
    (group === "seen" ? seen : unseen).push(uid);
  });
  return { seed, seen, unseen, users };
}

/**
 * Holds out the last `share` of a seen user's train conversations (in train order,
 * which the split already shuffled) as validation; users with one conversation keep
 * it for training. Returns the remaining train positions and the validation ones.
 */
export function holdoutValidation(
  entries: PairEntry[],
  train: number[],
  share: number,
): { train: number[]; val: number[] } {
  const convs = groupByConversation(entries, train);
  if (share <= 0 || convs.length < 2) return { train, val: [] };
  const nVal = Math.min(convs.length - 1, Math.max(1, Math.round(convs.length * share)));
  return { train: convs.slice(0, convs.length - nVal).flat(), val: convs.slice(convs.length - nVal).flat() };
}

/**
 * The per-epoch support/query split of a seen user's train positions:
 * conversations shuffled with seed `seed + userIndex + 1000 * epoch`, the first
 * `max(1, floor(nConv * valRatio))` to query, the rest to support; one conversation
 * serves as both.
 */
export function supportQuery(
  entries: PairEntry[],
  train: number[],
  { seed, userIndex, epoch, valRatio }: { seed: number; userIndex: number; epoch: number; valRatio: number },
): { support: number[]; query: number[] } {
  const convs = groupByConversation(entries, train);
  if (convs.length === 1) return { support: convs[0], query: convs[0] };
  new PyRandom(seed + userIndex + 1000 * epoch).shuffle(convs);
  const nQuery = Math.max(1, Math.floor(convs.length * valRatio));
  return { query: convs.slice(0, nQuery).flat(), support: convs.slice(nQuery).flat() };
}
