/**
 * From pairs to an embedding store, resumably: each distinct (context, reply) is one
 * row; rows are encoded in chunks appended to `<prefix>.partial/`, so a killed run
 * continues where it stopped and ends with the same store; the final files are
 * written atomically. Shards are contiguous slices of the sorted users, so merging
 * shards in order reproduces the unsharded store.
 */
import { createHash } from "node:crypto";
import { comparePy } from "../data/splits.ts";
import { conversationOf, type Message, type RawPair } from "../data/pairs.ts";
import { ConfigError } from "../errors.ts";
import { exists, writeFileAtomic } from "../fsutil.ts";
import { loadStore, type StoreMeta, writeStore } from "../store/store.ts";
import type { Encoded } from "./encoder.ts";

/** What to encode and the metadata that indexes it. */
export interface StorePlan {
  /** the distinct conversations to encode, in row order */
  conversations: Message[][];
  /** the store JSON indexing those rows */
  meta: StoreMeta;
  /** number of pairs */
  pairs: number;
}

/** Assigns rows: users in sorted order, a row per distinct (conversation, context, reply). */
export function planStore(pairs: RawPair[]): StorePlan {
  const byUser = new Map<string, RawPair[]>();
  for (const p of pairs) {
    if (!byUser.has(p.user)) byUser.set(p.user, []);
    byUser.get(p.user)!.push(p);
  }
  const conversations: Message[][] = [];
  const meta: StoreMeta = {};
  for (const user of [...byUser.keys()].sort(comparePy)) {
    const rowOf = new Map<string, number>();
    const row = (p: RawPair, reply: string) => {
      const key = JSON.stringify([p.conversationId, p.prompt, reply]);
      let r = rowOf.get(key);
      if (r === undefined) {
        r = conversations.length;
        rowOf.set(key, r);
        conversations.push(conversationOf(p.prompt, reply));
      }
      return r;
    };
    meta[user] = byUser.get(user)!.map((p) => ({
      conversation_id: p.conversationId,
      prompt: p.prompt,
      chosen: p.chosen,
      rejected: p.rejected,
      chosen_score: null,
      rejected_score: null,
      chosen_idx: row(p, p.chosen),
      rejected_idx: row(p, p.rejected),
      ...(p.split ? { split: p.split } : {}),
    }));
  }
  return { conversations, meta, pairs: pairs.length };
}

/** Parses `--shard i/n` (0-based i). */
export function parseShard(s: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(s.trim());
  const index = m ? Number(m[1]) : NaN, count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || index >= count) {
    throw new ConfigError(`--shard expects i/n with 0 <= i < n (e.g. 0/4), got '${s}'`);
  }
  return { index, count };
}

/** The pairs of shard i of n: a contiguous slice of the users in sorted order. */
export function shardPairs(pairs: RawPair[], { index, count }: { index: number; count: number }): RawPair[] {
  const users = [...new Set(pairs.map((p) => p.user))].sort(comparePy);
  const lo = Math.floor(index * users.length / count), hi = Math.floor((index + 1) * users.length / count);
  const mine = new Set(users.slice(lo, hi));
  return pairs.filter((p) => mine.has(p.user));
}

/** The prefix a shard writes to. */
export function shardPrefix(prefix: string, { index, count }: { index: number; count: number }): string {
  return `${prefix}.shard-${index}-of-${count}`;
}

/** Encodes rows (the caller's encoder). */
export type EncodeFn = (
  conversations: Message[][],
  onBatch?: (done: number, tokens: number) => void,
) => Promise<Encoded>;

/** Progress of a store being written. */
export interface WriteProgress {
  /** rows on disk so far */
  rowsDone: number;
  /** rows in all */
  rows: number;
  /** tokens encoded so far */
  tokens: number;
  /** seconds since the start */
  seconds: number;
}

/** Options of encodeStore. */
export interface EncodeStoreOptions {
  /** element type of the written embeddings @default "F32" */
  dtype?: "F32" | "F16" | "BF16";
  /** rows per appended chunk @default 64 */
  chunkRows?: number;
  /** extra safetensors `__metadata__` (encoder id, ...) */
  info?: Record<string, string>;
  /** called after each appended chunk */
  onProgress?: (p: WriteProgress) => void;
  /** stop (as if killed) once at least this many rows are on disk — for tests */
  stopAfterRows?: number;
}

function planHash(plan: StorePlan): string {
  const h = createHash("sha256");
  for (const c of plan.conversations) h.update(JSON.stringify(c));
  return h.digest("hex");
}

async function sizeOf(path: string): Promise<number> {
  return (await exists(path)) ? (await Deno.stat(path)).size : 0;
}

/**
 * Encodes a plan into `<prefix>.safetensors` + `<prefix>.json`, continuing any
 * earlier partial run of the same plan. Returns whether the store is complete.
 */
export async function encodeStore(
  prefix: string,
  plan: StorePlan,
  encode: EncodeFn,
  { dtype = "F32", chunkRows = 64, info = {}, onProgress, stopAfterRows }: EncodeStoreOptions = {},
): Promise<{ complete: boolean; resumedFrom: number }> {
  const work = `${prefix}.partial`;
  await Deno.mkdir(work, { recursive: true });
  const hash = planHash(plan);
  const statePath = `${work}/state.json`;
  let state: { plan: string; hidden?: number; hasScores?: boolean } = { plan: hash };
  if (await exists(statePath)) {
    const old = JSON.parse(await Deno.readTextFile(statePath));
    if (old.plan === hash) state = old;
    else {
      // a different dataset or shard: start over
      await Deno.remove(work, { recursive: true });
      await Deno.mkdir(work, { recursive: true });
    }
  }
  const rowsFile = `${work}/rows.f32`, scoresFile = `${work}/scores.f32`;
  let done = 0;
  if (state.hidden) {
    done = Math.min(
      Math.floor((await sizeOf(rowsFile)) / (4 * state.hidden)),
      Math.floor((await sizeOf(scoresFile)) / 4),
    );
    // drop a torn last chunk
    if (await exists(rowsFile)) await Deno.truncate(rowsFile, done * 4 * state.hidden);
    if (await exists(scoresFile)) await Deno.truncate(scoresFile, done * 4);
  } else {
    await Deno.writeFile(rowsFile, new Uint8Array(0));
    await Deno.writeFile(scoresFile, new Uint8Array(0));
  }
  const resumedFrom = done;
  const total = plan.conversations.length;
  const t0 = performance.now();
  let tokens = 0;
  while (done < total) {
    if (stopAfterRows !== undefined && done >= stopAfterRows) return { complete: false, resumedFrom };
    const chunk = plan.conversations.slice(done, done + chunkRows);
    const enc = await encode(
      chunk,
      (_, tk) =>
        onProgress?.({ rowsDone: done, rows: total, tokens: tokens + tk, seconds: (performance.now() - t0) / 1000 }),
    );
    const H = enc.embeddings.length / chunk.length;
    if (!state.hidden) {
      state = { plan: hash, hidden: H, hasScores: Boolean(enc.scores) };
      await writeFileAtomic(statePath, JSON.stringify(state));
    }
    const scores = enc.scores ?? new Float32Array(chunk.length).fill(NaN);
    const rf = await Deno.open(rowsFile, { append: true });
    await rf.write(new Uint8Array(enc.embeddings.buffer, enc.embeddings.byteOffset, enc.embeddings.byteLength));
    await rf.syncData();
    rf.close();
    const sf = await Deno.open(scoresFile, { append: true });
    await sf.write(new Uint8Array(scores.buffer, scores.byteOffset, scores.byteLength));
    sf.close();
    done += chunk.length;
    tokens += enc.tokens;
    onProgress?.({ rowsDone: done, rows: total, tokens, seconds: (performance.now() - t0) / 1000 });
  }
  const H = state.hidden!;
  const embeddings = new Float32Array(total * H);
  const f = await Deno.open(rowsFile, { read: true });
  const bytes = new Uint8Array(embeddings.buffer);
  let off = 0;
  while (off < bytes.length) {
    const n = await f.read(bytes.subarray(off));
    if (n === null) break;
    off += n;
  }
  f.close();
  const scoreBytes = await Deno.readFile(scoresFile);
  const scores = new Float32Array(scoreBytes.buffer, 0, total);
  if (state.hasScores) {
    for (const list of Object.values(plan.meta)) {
      for (const e of list) {
        e.chosen_score = scores[e.chosen_idx];
        e.rejected_score = scores[e.rejected_idx];
      }
    }
  }
  await writeStore(prefix, embeddings, H, plan.meta, { dtype, info });
  await Deno.remove(work, { recursive: true });
  return { complete: true, resumedFrom };
}

/** Joins shard stores (in the given order) into one store; users must be disjoint. */
export async function mergeStores(
  prefixes: string[],
  out: string,
  { dtype = "F32" }: { dtype?: "F32" | "F16" | "BF16" } = {},
): Promise<{ users: number; rows: number }> {
  const stores = [];
  for (const p of prefixes) stores.push(await loadStore(p));
  const dim = stores[0].dim;
  for (const s of stores) {
    if (s.dim !== dim) throw new ConfigError(`${s.prefix}: H=${s.dim} differs from ${stores[0].prefix} (H=${dim})`);
  }
  const rows = stores.reduce((a, s) => a + s.n, 0);
  const embeddings = new Float32Array(rows * dim);
  const meta: StoreMeta = {};
  let base = 0;
  for (const s of stores) {
    embeddings.set(s.embeddings, base * dim);
    for (const [user, list] of Object.entries(s.meta)) {
      if (meta[user]) throw new ConfigError(`user '${user}' appears in more than one shard (${s.prefix})`);
      meta[user] = list.map((e) => ({ ...e, chosen_idx: e.chosen_idx + base, rejected_idx: e.rejected_idx + base }));
    }
    base += s.n;
  }
  await writeStore(out, embeddings, dim, meta, { dtype, info: { ...stores[0].info, merged_from: prefixes.join(",") } });
  return { users: Object.keys(meta).length, rows };
}
