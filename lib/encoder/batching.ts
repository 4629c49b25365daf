/** Splitting a batch that one forward pass cannot hold, shared by the engines. */
import { FormatError } from "../errors.ts";
import type { BatchOutput } from "./engine.ts";

/** Refuses the batch when one of its sequences cannot run whole (`limit` gives the reason). */
export function checkLimits(seqs: number[][], limit: (tokens: number) => string | undefined, model: string): void {
  for (const s of seqs) {
    const why = limit(s.length);
    if (why) throw new FormatError(model, `a sequence of ${s.length} tokens ${why}`);
  }
}

/**
 * Runs `seqs` in one pass when `fits(count, tokens)` allows, else in halves (recursively);
 * rows and rewards come back in the input order. A single sequence always runs.
 */
export async function runSplit(
  seqs: number[][],
  fits: (count: number, maxTokens: number) => boolean,
  pass: (seqs: number[][]) => Promise<BatchOutput>,
): Promise<BatchOutput> {
  const T = Math.max(...seqs.map((s) => s.length));
  if (seqs.length === 1 || fits(seqs.length, T)) return await pass(seqs);
  const mid = Math.ceil(seqs.length / 2);
  const a = await runSplit(seqs.slice(0, mid), fits, pass);
  const b = await runSplit(seqs.slice(mid), fits, pass);
  const rows = new Float32Array(a.rows.length + b.rows.length);
  rows.set(a.rows);
  rows.set(b.rows, a.rows.length);
  let logits: Float32Array | undefined;
  if (a.logits && b.logits) {
    logits = new Float32Array(seqs.length);
    logits.set(a.logits);
    logits.set(b.logits, mid);
  }
  return { rows, logits };
}
