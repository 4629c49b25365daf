/**
 * Reddit TLDR (openai/summarize_from_feedback, `comparisons`) to preference pairs
 * (docs/method.md §6): a user is a `worker`; only workers present in both the train and
 * validation splits are kept; chosen = summaries[choice], rejected = the other;
 * prompt = info.post (info.article for CNN/DM rows, whose post is null).
 * Reads the Hub's parquet conversion or the original JSON-lines batch files.
 */
import { parquetReadObjects } from "hyparquet";
import { compressors } from "hyparquet-compressors";
import { FormatError } from "../errors.ts";
import type { PairStats, RawPair } from "./pairs.ts";
import { parseJsonLines } from "./prism.ts";

/** One comparison row as in the dataset. */
export interface ComparisonRow {
  /** the post (id, text, title, subreddit) the summaries are of */
  info: { id?: string; post?: string | null; article?: string | null; title?: string | null };
  /** the two summaries compared */
  summaries: { text: string; policy?: string; note?: string | null }[];
  /** index (0 or 1) of the summary the worker preferred */
  choice: number;
  /** the labeller (the user id) */
  worker: string;
  /** the dataset's own split */
  split?: string;
}

/** Reads a parquet file's rows (snappy/gzip/zstd/brotli supported). */
export async function readParquetRows(file: string): Promise<ComparisonRow[]> {
  const bytes = await Deno.readFile(file);
  try {
    return await parquetReadObjects({ file: bytes.buffer as ArrayBuffer, compressors }) as unknown as ComparisonRow[];
  } catch (e) {
    throw new FormatError(file, `not a readable parquet file (${(e as Error).message})`);
  }
}

/** Reads an original OpenAI batch file (JSON lines). */
export async function readBatchRows(file: string): Promise<ComparisonRow[]> {
  return parseJsonLines(file, await Deno.readTextFile(file)) as unknown as ComparisonRow[];
}

/** Maps a raw split value to train/val (train; valid1/valid2/validation -> val). */
export function splitOf(raw: string | undefined, file: string): "train" | "val" {
  if (raw === "train") return "train";
  if (raw === "valid1" || raw === "valid2" || raw === "validation" || raw === "val") return "val";
  throw new FormatError(file, `unexpected split value ${JSON.stringify(raw)} (expected train, valid1, valid2)`);
}

/** Builds pairs from (rows, split) sources; keeps workers seen in both splits. */
export function redditPairs(
  sources: { file: string; rows: ComparisonRow[]; split?: "train" | "val" }[],
): { pairs: RawPair[]; stats: PairStats } {
  const all: { row: ComparisonRow; split: "train" | "val"; file: string }[] = [];
  for (const s of sources) {
    s.rows.forEach((row, i) => {
      if (
        !row || !Array.isArray(row.summaries) || row.summaries.length !== 2 || (row.choice !== 0 && row.choice !== 1) ||
        !row.worker
      ) {
        throw new FormatError(s.file, `row ${i + 1}: expected info, two summaries, choice 0/1 and a worker`);
      }
      all.push({ row, split: s.split ?? splitOf(row.split, s.file), file: s.file });
    });
  }
  const inTrain = new Set(all.filter((a) => a.split === "train").map((a) => a.row.worker));
  const inVal = new Set(all.filter((a) => a.split === "val").map((a) => a.row.worker));
  const pairs: RawPair[] = [];
  let articlePrompts = 0;
  for (const { row, split } of all) {
    if (!inTrain.has(row.worker) || !inVal.has(row.worker)) continue;
    let prompt = row.info?.post;
    if (prompt === null || prompt === undefined) {
      prompt = row.info?.article ?? "";
      articlePrompts++;
    }
    pairs.push({
      user: row.worker,
      conversationId: row.info?.id ?? `${row.worker}:${pairs.length}`,
      prompt,
      chosen: row.summaries[row.choice].text,
      rejected: row.summaries[1 - row.choice].text,
      split,
    });
  }
  const users = new Set(pairs.map((p) => p.user));
  return {
    pairs,
    stats: {
      users: users.size,
      conversations: new Set(pairs.map((p) => `${p.user}\u0000${p.conversationId}`)).size,
      pairs: pairs.length,
      rows: all.length,
      workers: new Set(all.map((a) => a.row.worker)).size,
      train_pairs: pairs.filter((p) => p.split === "train").length,
      val_pairs: pairs.filter((p) => p.split === "val").length,
      article_prompts: articlePrompts,
    },
  };
}
