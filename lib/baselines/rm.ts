/** `rm`: the base reward model's own scores from the store (no training). */
import type { UserTask } from "../data/tasks.ts";
import { type EvalResult, summarize } from "../eval/evaluate.ts";

/** True when every test pair of every user has numeric chosen/rejected scores. */
export function hasScores(tasks: UserTask[]): boolean {
  return tasks.every((t) =>
    t.test.every((p) =>
      typeof t.entries[p].chosen_score === "number" && typeof t.entries[p].rejected_score === "number"
    )
  );
}

/** Accuracy of `chosen_score > rejected_score` (ties wrong) on each user's test pairs. */
export function evaluateRm(tasks: UserTask[]): EvalResult {
  return summarize(tasks.map((t) => {
    const correct = t.test.filter((p) =>
      (t.entries[p].chosen_score as number) > (t.entries[p].rejected_score as number)
    ).length;
    return {
      id: t.id,
      group: t.group,
      nTrain: t.train.length,
      nTest: t.test.length,
      accuracy: correct / t.test.length,
    };
  }));
}
