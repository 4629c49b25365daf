/** Bayes-optimal reference accuracy on synthetic stores (from `<prefix>.truth.json`). */
import type { SynthTruth } from "../data/synthetic.ts";
import type { UserTask } from "../data/tasks.ts";
import { exists } from "../fsutil.ts";
import { type GroupStats, groupStats } from "./evaluate.ts";

/** Reads `<prefix>.truth.json` when present. */
export async function readTruth(prefix: string): Promise<SynthTruth | undefined> {
  const f = `${prefix}.truth.json`;
  return (await exists(f)) ? JSON.parse(await Deno.readTextFile(f)) : undefined;
}

/**
 * The oracle (true reward) accuracy on each user's test pairs: correct when the
 * true reward prefers the labelled chosen reply. Grouped like model results.
 */
export function oracleAccuracy(
  truth: SynthTruth,
  tasks: UserTask[],
): { seen: GroupStats; unseen: GroupStats; overall: GroupStats; perUser: Map<string, number> } {
  const perUser = new Map<string, number>();
  for (const t of tasks) {
    const p = truth.oracle[t.id];
    if (!p) continue;
    perUser.set(t.id, t.test.filter((i) => p[i] > 0.5).length / t.test.length);
  }
  const of = (g: string) =>
    tasks.filter((t) => g === "all" || t.group === g).map((t) => perUser.get(t.id)).filter((v): v is number =>
      v !== undefined
    );
  return { seen: groupStats(of("seen")), unseen: groupStats(of("unseen")), overall: groupStats(of("all")), perUser };
}
