/** Bayes-optimal reference accuracy on synthetic stores (from `<prefix>.truth.json`). */
import type { SynthTruth } from "../data/synthetic.ts";
import type { UserTask } from "../data/tasks.ts";
import { exists } from "../fsutil.ts";
import { type GroupStats, groupStats } from "./evaluate.ts";

/**
 * Reads `<prefix>.truth.json` when present and it is this toolkit's own (users with a
 * kind and weights, an oracle probability list per user). Anything else (another
 * generator's file, a partial one, not JSON) is ignored with one warning: the run goes
 * on without the oracle row. `meta`, when given, must match: every user's oracle list
 * has one probability per entry.
 */
export async function readTruth(
  prefix: string,
  { meta, warn = (m: string) => console.error(`warning: ${m}`) }: {
    meta?: Record<string, unknown[]>;
    warn?: (message: string) => void;
  } = {},
): Promise<SynthTruth | undefined> {
  const f = `${prefix}.truth.json`;
  if (!(await exists(f))) return undefined;
  const problem = (why: string) => {
    warn(`${f}: ${why}; going on without the oracle`);
    return undefined;
  };
  let t: Record<string, unknown>;
  try {
    t = JSON.parse(await Deno.readTextFile(f));
  } catch (e) {
    return problem(`not valid JSON (${(e as Error).message})`);
  }
  if (
    !t || typeof t !== "object" || typeof t.users !== "object" || typeof t.oracle !== "object" || !t.users || !t.oracle
  ) {
    return problem("not this toolkit's truth file (expected users and oracle objects)");
  }
  const users = t.users as Record<string, unknown>, oracle = t.oracle as Record<string, unknown>;
  for (const [u, v] of Object.entries(users)) {
    const w = v as { kind?: unknown; weights?: unknown };
    if (!w || typeof w.kind !== "string" || !Array.isArray(w.weights)) return problem(`user '${u}' lacks kind/weights`);
  }
  for (const [u, p] of Object.entries(oracle)) {
    if (!Array.isArray(p) || p.some((x) => typeof x !== "number" || !(x >= 0 && x <= 1))) {
      return problem(`oracle of user '${u}' is not a list of probabilities`);
    }
  }
  if (t.directions !== undefined) {
    const d = t.directions as unknown[];
    const h = Array.isArray(d) && Array.isArray(d[0]) ? (d[0] as unknown[]).length : 0;
    if (
      !Array.isArray(d) || d.length === 0 || h === 0 ||
      d.some((row) => !Array.isArray(row) || row.length !== h || row.some((x) => !Number.isFinite(x))) ||
      !(typeof t.scale === "number" && t.scale > 0)
    ) {
      return problem("directions must be equal-length lists of finite numbers, with a positive scale");
    }
  }
  if (meta) {
    for (const [u, entries] of Object.entries(meta)) {
      const p = oracle[u] as number[] | undefined;
      if (!p) return problem(`no oracle for user '${u}' (a partial truth file)`);
      if (p.length !== entries.length) {
        return problem(`user '${u}' has ${entries.length} pairs, the oracle ${p.length}`);
      }
    }
  }
  return t as unknown as SynthTruth;
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
