/**
 * Comparison of MRM with the alternatives on the same store, splits and
 * evaluation: mrm, mrm-p (personalising), maml (no RPO), mrm-fo (first order), lore, bt,
 * user, rm, and on synthetic stores the `subspace` ceiling.
 */
import { evaluateLinear, trainLinear } from "../baselines/linear.ts";
import { evaluateRm, hasScores } from "../baselines/rm.ts";
import { evaluateSubspace, fitSubspace } from "../baselines/subspace.ts";
import { evaluateUserModels } from "../baselines/user.ts";
import type { SynthTruth } from "../data/synthetic.ts";
import type { UserTask } from "../data/tasks.ts";
import { ConfigError } from "../errors.ts";
import { type EvalResult, evaluate, evaluateProjected } from "../eval/evaluate.ts";
import { oracleAccuracy } from "../eval/oracle.ts";
import { writeFileAtomic } from "../fsutil.ts";
import { projectAll, releaseResidentRows } from "../model/project.ts";
import { chooseBackend, initBackend } from "../backend.ts";
import { personalConfig, type TrainConfig } from "../presets.ts";
import { accuracyBarSpec, fewShotSpec, userDistributionSpec, writeChart } from "../report/charts.ts";
import { meanStd, pct, table } from "../report/table.ts";
import { loadCheckpoint } from "../run/checkpoint.ts";
import { toCsv } from "../run/csv.ts";
import type { RunLog } from "../run/log.ts";
import { prepareTasks, runTraining } from "../run/run.ts";
import type { EmbeddingStore } from "../store/store.ts";

/** Every method, in the order tables list them. */
export const METHODS = ["mrm", "mrm-p", "mrm-pt", "maml", "mrm-fo", "lore", "bt", "user", "rm", "subspace"] as const;
/** A method name. */
export type Method = typeof METHODS[number];
/**
 * The methods run when `--methods` is not given: all but `mrm-pt`, whose start also fits
 * the unseen users' support pairs, a different protocol from the others'.
 */
export const DEFAULT_METHODS: Method[] = METHODS.filter((m) => m !== "mrm-pt");

/** One method trained and evaluated with one seed. */
export interface MethodRun {
  /** the method */
  method: Method;
  /** the seed of this run */
  seed: number;
  /** per-user test accuracies */
  result: EvalResult;
  /** training (or fitting) time */
  trainSeconds: number;
  /** unseen-user accuracy per shot count on the few-shot users */
  fewshot: { shots: number; acc: number }[];
}

/** Settings of a comparison. */
export interface CompareOptions {
  /** the methods to run */
  methods: Method[];
  /** one run per seed */
  seeds: number[];
  /** the folder everything is written to */
  outDir: string;
  /** support sizes of the few-shot curves */
  shots?: number[];
  /** the synthetic truth (enables `oracle` and `subspace`) */
  truth?: SynthTruth;
  /** where progress lines go */
  log: RunLog;
  /** epochs and lr of bt/lore (defaults: the config's epochs, lr 1e-2) */
  linear?: { epochs?: number; lr?: number };
  /** the config flags the user named: mrm-p keeps those and takes its own defaults for the rest */
  explicit?: string[];
  /**
   * `--backend auto`: each meta-trained method's run (training and its evaluation) takes
   * the backend the measured rule picks for it (lib/backend.ts chooseBackend), the rest
   * wasm; off, everything runs on the backend already initialized
   */
  autoBackend?: boolean;
}

/** The result: every run, the methods skipped (and why), and the few-shot users. */
export interface CompareResult {
  /** one entry per method and seed */
  runs: MethodRun[];
  /** methods that could not run, and why */
  skipped: { method: Method; reason: string }[];
  /** the users of the few-shot curves */
  fewshotUsers: string[];
}

/** Parses `--methods a,b,c` against the known names. */
export function parseMethods(s: string): Method[] {
  const out = s.split(",").map((m) => m.trim()).filter(Boolean);
  for (const m of out) {
    if (!(METHODS as readonly string[]).includes(m)) {
      throw new ConfigError(`--methods: unknown method '${m}' (expected some of ${METHODS.join(",")})`);
    }
  }
  if (out.length === 0) throw new ConfigError("--methods is empty");
  return out as Method[];
}

/** The unseen users with at least max(shots) train pairs (nested subsets use the first s). */
export function fewShotUsers(unseen: UserTask[], shots: number[]): UserTask[] {
  const need = Math.max(...shots);
  const users = unseen.filter((t) => t.train.length >= need);
  if (users.length === 0) {
    const most = Math.max(0, ...unseen.map((t) => t.train.length));
    throw new ConfigError(
      `--shots ${
        shots.join(",")
      }: no unseen user has ${need} train pairs (the most is ${most}); use smaller shot counts`,
    );
  }
  return users;
}

async function runOne(
  method: Method,
  store: EmbeddingStore,
  config: TrainConfig,
  opts: CompareOptions,
): Promise<MethodRun> {
  const { seen, unseen } = prepareTasks(store, config);
  const all = [...seen, ...unseen];
  const few = opts.shots ? fewShotUsers(unseen, opts.shots) : [];
  const t0 = performance.now();
  let result: EvalResult;
  let fewshot: { shots: number; acc: number }[] = [];
  const evalOpts = { innerLr: config.innerLr, innerSteps: config.evalInnerEpochs };
  if (method === "subspace") {
    const model = fitSubspace(opts.truth!, store.embeddings, store.dim, seen);
    const trainSeconds = (performance.now() - t0) / 1000;
    opts.log.line(`   subspace: prior strength ${model.strength} chosen on the seen users' train pairs (2-fold)`);
    result = evaluateSubspace(model, store.embeddings, store.dim, all);
    fewshot = (opts.shots ?? []).map((s) => ({
      shots: s,
      acc: evaluateSubspace(model, store.embeddings, store.dim, few, { shots: s }).unseen.mean,
    }));
    return { method, seed: config.seed, result, trainSeconds, fewshot };
  }
  if (method === "mrm" || method === "mrm-p" || method === "mrm-pt" || method === "maml" || method === "mrm-fo") {
    const c: TrainConfig = method === "mrm-p" || method === "mrm-pt"
      ? personalConfig({ ...config, method: "mrm-p", transductive: method === "mrm-pt" }, opts.explicit)
      : {
        ...config,
        method: "mrm",
        objective: method === "maml" ? "mean" : "rpo",
        firstOrder: method === "mrm-fo" || config.firstOrder,
      };
    const dir = `${opts.outDir}/runs/${method}_s${config.seed}`;
    let onGpu = false;
    if (opts.autoBackend) {
      // one training run (its log_freq is its length: one evaluation) and this evaluation
      const { backend, reason } = await chooseBackend("auto", {
        epochs: c.epochs,
        seenUsers: seen.length,
        evaluations: 2,
        users: all.length,
        storeBytes: store.embeddings.byteLength,
        oneLayer: c.hiddenSizes.length === 1,
        usersPerStep: c.tasksPerBatch,
      });
      onGpu = backend === "webgpu";
      opts.log.line(`   backend ${backend} (--backend auto: ${reason})`);
    }
    try {
      await runTraining(store, { ...c, logFreq: c.epochs, saveFreq: c.epochs }, { outDir: dir, log: opts.log });
      const trainSeconds = (performance.now() - t0) / 1000;
      const { params } = await loadCheckpoint(`${dir}/epoch_${c.epochs}.safetensors`);
      result = await evaluate(params, store.embeddings, all, evalOpts);
      if (few.length && method === "mrm-pt") {
        // its start fitted every unseen user's train pairs, more than a curve's s shots
        opts.log.line("   mrm-pt: no few-shot curve (its start saw all of each unseen user's train pairs)");
      } else if (few.length) {
        const y = await projectAll(store.embeddings, store.dim, params.layers[0]);
        fewshot = opts.shots!.map((s) => ({
          shots: s,
          acc: evaluateProjected(params, y, few, { ...evalOpts, shots: s }).unseen.mean,
        }));
      }
      return { method, seed: config.seed, result, trainSeconds, fewshot };
    } finally {
      if (onGpu) {
        releaseResidentRows();
        await initBackend("wasm");
      }
    }
  }
  if (method === "bt" || method === "lore") {
    const model = await trainLinear(store.embeddings, store.dim, seen, {
      k: method === "bt" ? 1 : config.hiddenSizes[config.hiddenSizes.length - 1],
      personalized: method === "lore",
      epochs: opts.linear?.epochs ?? config.epochs,
      lr: opts.linear?.lr ?? 1e-2,
      seed: config.seed,
    });
    const trainSeconds = (performance.now() - t0) / 1000;
    result = await evaluateLinear(model, store.embeddings, all);
    for (const s of opts.shots ?? []) {
      fewshot.push({ shots: s, acc: (await evaluateLinear(model, store.embeddings, few, { shots: s })).unseen.mean });
    }
    return { method, seed: config.seed, result, trainSeconds, fewshot };
  }
  if (method === "user") {
    result = evaluateUserModels(store.embeddings, store.dim, all);
    const trainSeconds = (performance.now() - t0) / 1000;
    fewshot = (opts.shots ?? []).map((s) => ({
      shots: s,
      acc: evaluateUserModels(store.embeddings, store.dim, few, { shots: s }).unseen.mean,
    }));
    return { method, seed: config.seed, result, trainSeconds, fewshot };
  }
  result = evaluateRm(all);
  fewshot = (opts.shots ?? []).map((s) => ({ shots: s, acc: evaluateRm(few).unseen.mean }));
  return { method, seed: config.seed, result, trainSeconds: 0, fewshot };
}

/** Runs every method for every seed, writes CSVs and charts, prints the table. */
export async function runCompare(
  store: EmbeddingStore,
  config: TrainConfig,
  opts: CompareOptions,
): Promise<CompareResult> {
  await Deno.mkdir(opts.outDir, { recursive: true });
  const runs: MethodRun[] = [];
  const skipped: { method: Method; reason: string }[] = [];
  let fewshotUsers: string[] = [];
  for (const method of opts.methods) {
    for (const seed of opts.seeds) {
      const c = { ...config, seed };
      if (method === "subspace" && !opts.truth?.directions) {
        const reason = opts.truth
          ? "the truth file records no latent directions (regenerate the store with deno task synth)"
          : "it needs a synthetic store's truth file (<prefix>.truth.json)";
        skipped.push({ method, reason });
        opts.log.line(`subspace: skipped, ${reason}`);
        break;
      }
      if (method === "rm") {
        const { seen, unseen } = prepareTasks(store, c);
        if (!hasScores([...seen, ...unseen])) {
          skipped.push({ method, reason: "the store has no chosen_score/rejected_score (null or absent)" });
          opts.log.line(`rm: skipped, the store has no reward-model scores (chosen_score/rejected_score)`);
          break;
        }
      }
      opts.log.line(`== ${method} (seed ${seed})`);
      const r = await runOne(method, store, c, opts);
      runs.push(r);
      opts.log.line(
        `   seen ${pct(r.result.seen.mean)}  unseen ${pct(r.result.unseen.mean)}  overall ${
          pct(r.result.overall.mean)
        }  (${r.trainSeconds.toFixed(1)} s)`,
      );
    }
  }
  if (opts.shots) {
    fewshotUsers = fewShotUsers(prepareTasks(store, { ...config, seed: opts.seeds[0] }).unseen, opts.shots).map((t) =>
      t.id
    );
  }
  await writeOutputs(store, config, opts, runs, skipped);
  return { runs, skipped, fewshotUsers };
}

async function writeOutputs(
  store: EmbeddingStore,
  config: TrainConfig,
  opts: CompareOptions,
  runs: MethodRun[],
  skipped: { method: Method; reason: string }[],
): Promise<void> {
  const out = opts.outDir;
  await writeFileAtomic(
    `${out}/results.csv`,
    toCsv(
      [
        "method",
        "seed",
        "seen_acc",
        "unseen_acc",
        "overall_acc",
        "seen_worst10",
        "unseen_worst10",
        "train_seconds",
        "seen_median",
        "unseen_median",
        "overall_worst10",
      ],
      runs.map((
        r,
      ) => [
        r.method,
        r.seed,
        r.result.seen.mean,
        r.result.unseen.mean,
        r.result.overall.mean,
        r.result.seen.worst10,
        r.result.unseen.worst10,
        r.trainSeconds,
        r.result.seen.median,
        r.result.unseen.median,
        r.result.overall.worst10,
      ]),
    ),
  );
  const kindOf = (id: string) => opts.truth?.users[id]?.kind ?? "";
  await writeFileAtomic(
    `${out}/users.csv`,
    toCsv(
      ["method", "seed", "user_id", "group", "n_train", "n_test", "accuracy", "kind"],
      runs.flatMap((r) =>
        r.result.users.map((u) => [r.method, r.seed, u.id, u.group, u.nTrain, u.nTest, u.accuracy, kindOf(u.id)])
      ),
    ),
  );
  // the table: mean ± std over seeds
  const methods = [...new Set(runs.map((r) => r.method))];
  const keys = ["seen", "unseen", "overall"] as const;
  const rows: (string | number)[][] = methods.map((m) => {
    const rs = runs.filter((r) => r.method === m);
    return [
      m,
      ...keys.map((k) => meanStd(rs.map((r) => r.result[k].mean)).text),
      meanStd(rs.map((r) => r.result.seen.worst10)).text,
      meanStd(rs.map((r) => r.result.unseen.worst10)).text,
      (rs.reduce((s, r) => s + r.trainSeconds, 0) / rs.length).toFixed(1),
    ];
  });
  let oracle: ReturnType<typeof oracleAccuracy> | undefined;
  if (opts.truth) {
    const { seen, unseen } = prepareTasks(store, { ...config, seed: opts.seeds[0] });
    oracle = oracleAccuracy(opts.truth, [...seen, ...unseen]);
    rows.push([
      "oracle",
      pct(oracle.seen.mean),
      pct(oracle.unseen.mean),
      pct(oracle.overall.mean),
      pct(oracle.seen.worst10),
      pct(oracle.unseen.worst10),
      "-",
    ]);
  }
  const text = table(["method", "seen", "unseen", "overall", "seen worst10", "unseen worst10", "train s"], rows);
  opts.log.line(
    `\nUser-level test accuracy (%), last epoch / final model, mean ± std over ${opts.seeds.length} seed(s):\n${text}`,
  );
  for (const s of skipped) opts.log.line(`skipped ${s.method}: ${s.reason}`);
  await writeFileAtomic(`${out}/table.txt`, text + "\n");

  const bars: { method: string; group: string; acc: number }[] = runs.flatMap((r) =>
    keys.map((k) => ({ method: r.method, group: k, acc: r.result[k].mean }))
  );
  if (oracle) { for (const k of keys) bars.push({ method: "oracle", group: k, acc: oracle[k].mean }); }
  await writeChart(
    `${out}/accuracy.svg`,
    accuracyBarSpec(bars, `User-level accuracy (${config.dataset}, ${opts.seeds.length} seed(s))`),
  );
  const dist = runs.filter((r) => r.seed === opts.seeds[0]).flatMap((r) =>
    r.result.users.map((u) => ({ method: r.method, accuracy: u.accuracy }))
  );
  await writeChart(`${out}/users.svg`, userDistributionSpec(dist, "Per-user test accuracy"));

  if (opts.shots) {
    const few: { method: string; seed: number; shots: number; acc: number }[] = runs.flatMap((r) =>
      r.fewshot.map((f) => ({ method: r.method, seed: r.seed, shots: f.shots, acc: f.acc }))
    );
    if (opts.truth) {
      const { unseen } = prepareTasks(store, { ...config, seed: opts.seeds[0] });
      const o = oracleAccuracy(opts.truth, fewShotUsers(unseen, opts.shots));
      for (const s of opts.shots) few.push({ method: "oracle", seed: opts.seeds[0], shots: s, acc: o.unseen.mean });
    }
    await writeFileAtomic(
      `${out}/fewshot.csv`,
      toCsv(["method", "seed", "shots", "unseen_acc"], few.map((f) => [f.method, f.seed, f.shots, f.acc])),
    );
    await writeChart(
      `${out}/fewshot.svg`,
      fewShotSpec(few, "Few-shot: accuracy of unseen users vs. their train pairs"),
    );
    const fm = [...new Set(few.map((f) => f.method))];
    opts.log.line(
      `\nFew-shot (unseen users with >= ${Math.max(...opts.shots)} train pairs), accuracy %:\n` + table(
        ["method", ...opts.shots.map((s) => `${s} shots`)],
        fm.map((m) => [
          m,
          ...opts.shots!.map((s) => pct(meanOf(few.filter((f) => f.method === m && f.shots === s).map((f) => f.acc)))),
        ]),
      ),
    );
  }
}

function meanOf(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}
