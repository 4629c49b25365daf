/**
 * Hyperparameter sweeps with honest selection: every setting trains with a share of
 * each seen user's train conversations held out; the setting with the best
 * validation accuracy is chosen (never the test pairs) and its test accuracy is
 * reported beside the release setting's, with a per-user breakdown.
 */
import type { SynthTruth } from "../data/synthetic.ts";
import { ConfigError } from "../errors.ts";
import { writeFileAtomic } from "../fsutil.ts";
import type { TrainConfig } from "../presets.ts";
import { sweepSpec, writeChart } from "../report/charts.ts";
import { pct, table } from "../report/table.ts";
import { parseCsv, toCsv } from "../run/csv.ts";
import type { RunLog } from "../run/log.ts";
import { prepareTasks, runTraining } from "../run/run.ts";
import { chooseBackend, initBackend } from "../backend.ts";
import { releaseResidentRows } from "../model/project.ts";
import type { EmbeddingStore } from "../store/store.ts";

/** One grid axis: a release flag name and its values (as typed). */
export interface GridAxis {
  /** the release flag name swept */
  flag: string;
  /** its values */
  values: string[];
}

/** Parses `--grid key=v1,v2` strings. */
export function parseGrid(specs: string[]): GridAxis[] {
  return specs.map((s) => {
    const m = /^([a-z_]+)=(.+)$/.exec(s.trim());
    if (!m) throw new ConfigError(`--grid '${s}': expected key=v1,v2,... (e.g. inner_lr=1e-3,1e-2)`);
    const values = m[2].split(",").map((x) => x.trim()).filter(Boolean);
    return { flag: m[1], values: values.map((x) => normalizeValue(m[1], x)) };
  });
}

/** A canonical spelling, so 1e-3 and 0.001 name the same setting (hidden_layers: 4-2 -> 4,2). */
export function normalizeValue(flag: string, v: string): string {
  if (flag === "hidden_layers") return v.replaceAll("-", ",");
  const n = Number(v);
  return v.trim() !== "" && Number.isFinite(n) ? String(n) : v;
}

/** Every combination of the axes, as flag -> value maps. */
export function cartesian(axes: GridAxis[]): Record<string, string>[] {
  return axes.reduce<Record<string, string>[]>(
    (acc, a) => acc.flatMap((s) => a.values.map((v) => ({ ...s, [a.flag]: v }))),
    [{}],
  );
}

/** A setting's display name. */
export function settingName(s: Record<string, string>): string {
  return Object.entries(s).map(([k, v]) => `${k}=${v}`).join(" ");
}

/** One trained setting's figures at its last epoch. */
export interface SweepRow {
  /** flag -> value of this grid point */
  setting: Record<string, string>;
  /** a short label of the setting */
  name: string;
  /** validation accuracy (held-out seen-user pairs) */
  val: number;
  /** test accuracy, seen users */
  seen: number;
  /** test accuracy, unseen users */
  unseen: number;
  /** test accuracy, all users */
  overall: number;
  /** mean of the worst 10% of seen users */
  seenWorst10: number;
  /** mean of the worst 10% of unseen users */
  unseenWorst10: number;
  /** training and evaluation time */
  seconds: number;
  /** each user's group and test accuracy */
  users: Map<string, { group: string; acc: number }>;
}

/** Result of a sweep: rows, the release row and the chosen row. */
export interface SweepResult {
  /** one row per grid point */
  rows: SweepRow[];
  /** the release configuration */
  release: SweepRow;
  /** the grid point chosen on validation */
  chosen: SweepRow;
}

/**
 * Runs the sweep. `apply(config, setting)` applies a setting's flags (the task's
 * flag parser), `release` is the preset's value for each swept flag.
 */
export async function runSweep(
  store: EmbeddingStore,
  base: TrainConfig,
  grid: GridAxis[],
  release: Record<string, string>,
  apply: (c: TrainConfig, setting: Record<string, string>) => TrainConfig,
  { outDir, log, truth, autoBackend = false }: {
    outDir: string;
    log: RunLog;
    truth?: SynthTruth;
    /** `--backend auto`: each setting's run on the backend the measured rule picks for it (lib/backend.ts) */
    autoBackend?: boolean;
  },
): Promise<SweepResult> {
  if (!(base.valHoldout > 0)) throw new ConfigError("a sweep needs --val_holdout > 0 to select without the test set");
  await Deno.mkdir(outDir, { recursive: true });
  const settings = cartesian(grid);
  release = Object.fromEntries(Object.entries(release).map(([k, v]) => [k, normalizeValue(k, v)]));
  const releaseName = settingName(release);
  if (!settings.some((s) => settingName(s) === releaseName)) settings.unshift(release);
  const rows: SweepRow[] = [];
  for (const [i, setting] of settings.entries()) {
    const name = settingName(setting);
    const c = apply({ ...structuredClone(base) }, setting);
    const dir = `${outDir}/runs/${String(i).padStart(2, "0")}`;
    log.line(`== [${i + 1}/${settings.length}] ${name}`);
    const t0 = performance.now();
    let onGpu = false;
    if (autoBackend) {
      const { seen, unseen } = prepareTasks(store, c);
      const { backend, reason } = await chooseBackend("auto", {
        epochs: c.epochs,
        seenUsers: seen.length,
        evaluations: 1,
        users: seen.length + unseen.length,
        storeBytes: store.embeddings.byteLength,
        oneLayer: c.hiddenSizes.length === 1,
        usersPerStep: c.tasksPerBatch,
      });
      onGpu = backend === "webgpu";
      log.line(`   backend ${backend} (--backend auto: ${reason})`);
    }
    try {
      await runTraining(store, { ...c, logFreq: c.epochs, saveFreq: c.epochs }, { outDir: dir, log });
    } finally {
      if (onGpu) {
        releaseResidentRows();
        await initBackend("wasm");
      }
    }
    const [head, ...body] = parseCsv(await Deno.readTextFile(`${dir}/metrics.csv`));
    const last = Object.fromEntries(head.map((h, j) => [h, Number(body[body.length - 1][j])]));
    const [uh, ...ub] = parseCsv(await Deno.readTextFile(`${dir}/users.csv`));
    const col = (n: string) => uh.indexOf(n);
    const users = new Map(
      ub.map((r) => [r[col("user_id")], { group: r[col("group")], acc: Number(r[col("accuracy_last")]) }]),
    );
    rows.push({
      setting,
      name,
      val: last.val_acc,
      seen: last.seen_acc,
      unseen: last.unseen_acc,
      overall: last.overall_acc,
      seenWorst10: last.seen_worst10,
      unseenWorst10: last.unseen_worst10,
      seconds: (performance.now() - t0) / 1000,
      users,
    });
  }
  const releaseRow = rows.find((r) => r.name === releaseName)!;
  const chosen = rows.reduce((b, r) => (r.val > b.val ? r : b), rows[0]);
  await writeSweepOutputs(outDir, grid, rows, releaseRow, chosen, log, truth);
  return { rows, release: releaseRow, chosen };
}

async function writeSweepOutputs(
  outDir: string,
  grid: GridAxis[],
  rows: SweepRow[],
  release: SweepRow,
  chosen: SweepRow,
  log: RunLog,
  truth?: SynthTruth,
): Promise<void> {
  const role = (
    r: SweepRow,
  ) => (r === chosen && r === release ? "release+chosen" : r === chosen ? "chosen" : r === release ? "release" : "");
  const flags = grid.map((a) => a.flag);
  await writeFileAtomic(
    `${outDir}/sweep.csv`,
    toCsv(
      [
        ...flags,
        "val_acc",
        "seen_acc",
        "unseen_acc",
        "overall_acc",
        "seen_worst10",
        "unseen_worst10",
        "seconds",
        "role",
      ],
      rows.map((
        r,
      ) => [
        ...flags.map((f) => r.setting[f] ?? ""),
        r.val,
        r.seen,
        r.unseen,
        r.overall,
        r.seenWorst10,
        r.unseenWorst10,
        r.seconds,
        role(r),
      ]),
    ),
  );
  log.line(
    "\nSweep (selection on held-out validation of seen users' train pairs; test shown, never used):\n" +
      table(
        ["setting", "val", "seen", "unseen", "overall", "seen w10", "unseen w10", ""],
        rows.map((
          r,
        ) => [
          r.name,
          pct(r.val),
          pct(r.seen),
          pct(r.unseen),
          pct(r.overall),
          pct(r.seenWorst10),
          pct(r.unseenWorst10),
          role(r),
        ]),
      ),
  );
  // Per-user: the hardest users under the release setting, and by synthetic kind.
  const ids = [...release.users.keys()];
  const sorted = [...ids].sort((a, b) => release.users.get(a)!.acc - release.users.get(b)!.acc);
  const hard = sorted.slice(0, Math.max(1, Math.ceil(ids.length / 10)));
  const mean = (r: SweepRow, us: string[]) => us.reduce((s, u) => s + (r.users.get(u)?.acc ?? 0), 0) / us.length;
  const breakdown: (string | number)[][] = [[
    "hardest 10% under release",
    String(hard.length),
    pct(mean(release, hard)),
    pct(mean(chosen, hard)),
  ]];
  if (truth) {
    for (const kind of ["typical", "contrarian", "long_tail"]) {
      const us = ids.filter((u) => truth.users[u]?.kind === kind);
      if (us.length) {
        breakdown.push([`${kind} users`, String(us.length), pct(mean(release, us)), pct(mean(chosen, us))]);
      }
    }
  }
  breakdown.push(["all users", String(ids.length), pct(mean(release, ids)), pct(mean(chosen, ids))]);
  log.line(
    `\nPer-user breakdown, test accuracy %: release (${release.name}) vs chosen (${chosen.name}):\n` +
      table(["users", "n", "release", "chosen"], breakdown),
  );
  await writeFileAtomic(
    `${outDir}/users.csv`,
    toCsv(
      ["user_id", "group", "kind", "release_acc", "chosen_acc", "hardest10_under_release"],
      ids.map((
        u,
      ) => [
        u,
        release.users.get(u)!.group,
        truth?.users[u]?.kind ?? "",
        release.users.get(u)!.acc,
        chosen.users.get(u)?.acc,
        hard.includes(u) ? 1 : 0,
      ]),
    ),
  );
  await writeChart(
    `${outDir}/sweep.svg`,
    sweepSpec(
      rows.map((r) => ({ setting: r.name, val: r.val, test: r.overall, role: role(r) || "other" })),
      "Sweep: validation vs. test accuracy",
    ),
  );
}
