/**
 * A meta-training run and its folder (docs/formats.md): config.json, metrics.csv,
 * users.csv, summary.json, train.log, epoch_<E>.safetensors, best.safetensors and
 * resume.safetensors (optimizer state, so `--resume` continues bit-exactly).
 */
import { holdoutValidation, type Splits, splitUsers } from "../data/splits.ts";
import { buildTasks, type UserTask } from "../data/tasks.ts";
import { ConfigError } from "../errors.ts";
import { evaluate, type UserResult } from "../eval/evaluate.ts";
import { exists, writeFileAtomic } from "../fsutil.ts";
import { initParams, isPersonal, type MrmParams, namedArrays } from "../model/params.ts";
import { initPersonal } from "../train/personal_init.ts";
import { MRM_P_DEFAULTS, type TrainConfig } from "../presets.ts";
import type { EmbeddingStore } from "../store/store.ts";
import { initialState, makeTrainer, totalSteps, trainEpoch, type TrainState } from "../train/meta.ts";
import { loadCheckpoint, loadResumeState, saveCheckpoint, saveResumeState } from "./checkpoint.ts";
import { parseCsv, toCsv } from "./csv.ts";
import { formatDuration, RunLog } from "./log.ts";
import { pct } from "../report/table.ts";
import { releaseResidentRows } from "../model/project.ts";

/** metrics.csv columns; the first nine are fixed by docs/formats.md. */
export const METRICS_HEADER = [
  "epoch",
  "meta_loss",
  "seen_acc",
  "unseen_acc",
  "overall_acc",
  "seen_worst10",
  "unseen_worst10",
  "lr",
  "seconds",
  "seen_median",
  "unseen_median",
  "overall_median",
  "overall_worst10",
  "rpo_objective",
  "val_acc",
];

/** Accuracy figures of one evaluated epoch. */
export interface EpochReport {
  /** the epoch (1-based) */
  epoch: number;
  /** mean accuracy of seen users */
  seen_acc: number;
  /** mean accuracy of unseen users */
  unseen_acc: number;
  /** mean accuracy of all users */
  overall_acc: number;
  /** mean accuracy of the worst 10% of seen users */
  seen_worst10: number;
  /** mean accuracy of the worst 10% of unseen users */
  unseen_worst10: number;
  /** median accuracy of seen users */
  seen_median: number;
  /** median accuracy of unseen users */
  unseen_median: number;
}

/** summary.json */
export interface RunSummary {
  /** the epoch with the best overall test accuracy (the release's selection) */
  best: EpochReport & { selection: string };
  /** the last evaluated epoch (no selection) */
  last: EpochReport & { selection: string };
  /** how many users each group has */
  users: { seen: number; unseen: number };
  /** wall time of the run */
  seconds: number;
  /** the run folder */
  outDir: string;
}

/** The users of a store under a config's split. */
export function prepareTasks(
  store: EmbeddingStore,
  c: TrainConfig,
): { splits: Splits; seen: UserTask[]; unseen: UserTask[] } {
  const splits = splitUsers(store.meta, c.splitStyle, {
    seed: c.seed,
    seenTrainLimit: c.seenTrainLimit,
    unseenTrainLimit: c.unseenTrainLimit,
  });
  if (splits.seen.length === 0) {
    throw new ConfigError(`${store.prefix}: no seen users with both train and test pairs under this split`);
  }
  const tasks = buildTasks(store, splits);
  if (c.valHoldout > 0) {
    for (const t of tasks.seen) Object.assign(t, holdoutValidation(t.entries, t.train, c.valHoldout));
  }
  return { splits, ...tasks };
}

function rowToReport(row: Record<string, number>): EpochReport {
  const { epoch, seen_acc, unseen_acc, overall_acc, seen_worst10, unseen_worst10, seen_median, unseen_median } = row;
  return { epoch, seen_acc, unseen_acc, overall_acc, seen_worst10, unseen_worst10, seen_median, unseen_median };
}

/** Options of a run. */
export interface RunOptions {
  /** the folder everything is written to */
  outDir: string;
  /** start from this checkpoint's weights instead of a random init */
  init?: string;
  /** continue the run in outDir from its resume state */
  resume?: boolean;
  /** where progress lines go (default: stdout and the run folder's train.log) */
  log?: RunLog;
  /** stop after this many epochs of this invocation (tests use it to simulate a kill) */
  stopAfterEpochs?: number;
  /** empty an existing non-empty outDir first (otherwise such a folder is refused unless resuming) */
  overwrite?: boolean;
}

/**
 * Takes the run folder: creates it, refuses a non-empty one (unless resuming or
 * `overwrite`, which empties it), and holds `<outDir>/.lock` (with the pid) so that a
 * second run cannot write into the same folder. A lock whose process is gone is taken over.
 */
export async function claimRunFolder(
  outDir: string,
  { resume = false, overwrite = false }: { resume?: boolean; overwrite?: boolean } = {},
): Promise<() => Promise<void>> {
  if (!outDir.trim()) throw new ConfigError("--out needs a folder name");
  try {
    await Deno.mkdir(outDir, { recursive: true });
  } catch (e) {
    throw new ConfigError(`--out ${outDir}: cannot create the run folder (${(e as Error).message})`);
  }
  const lock = `${outDir}/.lock`;
  const take = async () => {
    try {
      await Deno.writeTextFile(lock, String(Deno.pid), { createNew: true });
      return true;
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) return false;
      throw new ConfigError(`--out ${outDir}: cannot write there (${(e as Error).message})`);
    }
  };
  if (!(await take())) {
    const pid = Number(await Deno.readTextFile(lock).catch(() => ""));
    const alive = Number.isInteger(pid) && pid > 0 && (await exists(`/proc/${pid}`));
    if (alive && pid !== Deno.pid) throw new ConfigError(`${outDir}: another run (pid ${pid}) is writing this folder`);
    await Deno.remove(lock).catch(() => {});
    if (!(await take())) throw new ConfigError(`${outDir}: another run is writing this folder`);
  }
  const release = async () => void (await Deno.remove(lock).catch(() => {}));
  const entries = [...Deno.readDirSync(outDir)].map((e) => e.name).filter((n) => n !== ".lock");
  if (!resume && entries.length) {
    if (!overwrite) {
      await release();
      throw new ConfigError(
        `--out ${outDir} already holds ${entries.length} file(s) (${entries.slice(0, 3).join(", ")}...): ` +
          `continue it with --resume ${outDir}, or pass --overwrite to empty it first`,
      );
    }
    for (const n of entries) await Deno.remove(`${outDir}/${n}`, { recursive: true });
  }
  if (resume) {
    // leftovers of writers killed mid-write
    for (const n of entries) if (/\.tmp-\d+-[0-9a-f]{8}$/.test(n)) await Deno.remove(`${outDir}/${n}`).catch(() => {});
  }
  return release;
}

/** The name of the first parameter tensor holding NaN or Inf, if any. */
function nonFinite(p: MrmParams): string | undefined {
  return namedArrays(p).find(([, a]) => a.some((v) => !Number.isFinite(v)))?.[0];
}

/**
 * The users whose train pairs mrm-p's start fits: the seen users, and with `transductive`
 * the unseen users too, through their train (support) positions only, never their test
 * or validation pairs (initPersonal reads `train`).
 */
export function personalStartUsers(
  tasks: { seen: UserTask[]; unseen: UserTask[] },
  config: Pick<TrainConfig, "transductive">,
): UserTask[] {
  return config.transductive ? [...tasks.seen, ...tasks.unseen] : tasks.seen;
}

/** Trains, evaluates and checkpoints one run; returns its summary. */
export async function runTraining(store: EmbeddingStore, config: TrainConfig, opts: RunOptions): Promise<RunSummary> {
  const { outDir } = opts;
  const log = opts.log ?? new RunLog(true);
  const release = await claimRunFolder(outDir, opts);
  try {
    return await trainIn(store, config, opts, log);
  } finally {
    releaseResidentRows();
    await release();
  }
}

async function trainIn(store: EmbeddingStore, config: TrainConfig, opts: RunOptions, log: RunLog): Promise<RunSummary> {
  const { outDir } = opts;
  await log.attach(`${outDir}/train.log`);
  const resumePath = `${outDir}/resume.safetensors`;
  const start = await startRun(store, config, opts, log);
  const { state, rows, tasks } = start;
  config = start.config;
  // the split depends only on the split settings, which neither --init nor mrm-p's start changes
  const { seen, unseen } = tasks ?? prepareTasks(store, config);
  const all = [...seen, ...unseen];
  const trainer = makeTrainer(seen, store.dim, config.tasksPerBatch);
  const total = totalSteps(seen.length, config);
  log.line(
    `${config.dataset}: ${seen.length} seen + ${unseen.length} unseen users, H=${store.dim}, ${config.epochs} epochs x ${
      Math.ceil(seen.length / config.tasksPerBatch)
    } steps (${total} total)`,
  );

  const secondsOffset = rows.length ? rows[rows.length - 1].seconds : 0;
  const t0 = performance.now();
  const elapsed = () => secondsOffset + (performance.now() - t0) / 1000;
  const best = () =>
    rows.reduce<Record<string, number> | undefined>((b, r) => (!b || r.overall_acc > b.overall_acc ? r : b), undefined);
  let lastUsers: UserResult[] | undefined;
  let ranThisCall = 0;
  const startEpoch = state.epoch;
  while (state.epoch < config.epochs) {
    if (opts.stopAfterEpochs !== undefined && ranThisCall >= opts.stopAfterEpochs) break;
    const ep = state.epoch + 1;
    const st = await trainEpoch(state, store.embeddings, trainer, config, (done, loss) => {
      const rate = (ep - 1 - startEpoch) * seen.length + done;
      const perUser = (performance.now() - t0) / 1000 / Math.max(1, rate);
      const eta = perUser * ((config.epochs - ep + 1) * seen.length - done);
      log.status(
        `epoch ${ep}/${config.epochs}  ${done}/${seen.length} users  ${(1 / perUser).toFixed(0)} users/s  ${
          Number.isFinite(loss) ? `loss ${loss.toFixed(4)}  ` : ""
        }ETA ${formatDuration(eta)}`,
      );
    });
    ranThisCall++;
    const broken = nonFinite(state.params);
    if (!Number.isFinite(st.metaLoss) || broken) {
      // nothing of this epoch is saved: the checkpoints and resume state on disk are the last good ones
      throw new ConfigError(
        `epoch ${state.epoch}: the meta-loss is ${st.metaLoss}${broken ? ` and ${broken} turned non-finite` : ""}; ` +
          `training stopped (learning rates too large? --inner_lr ${config.innerLr}, --meta_lr ${config.metaLr}). ` +
          `The last good state in ${outDir} is untouched.`,
      );
    }
    const isLast = state.epoch === config.epochs;
    const evalNow = state.epoch % config.logFreq === 0 || isLast;
    if (!evalNow && !log.isTerminal) {
      const eta = (elapsed() - secondsOffset) / ranThisCall * (config.epochs - state.epoch);
      log.line(
        `epoch ${state.epoch}/${config.epochs}  loss ${st.metaLoss.toFixed(4)}  ${
          (st.users / st.seconds).toFixed(0)
        } users/s  ETA ${formatDuration(eta)}`,
      );
    }
    if (evalNow) {
      const ev = await evaluate(state.params, store.embeddings, all, {
        innerLr: config.innerLr,
        innerSteps: config.evalInnerEpochs,
      });
      const row: Record<string, number> = {
        epoch: state.epoch,
        meta_loss: st.metaLoss,
        seen_acc: ev.seen.mean,
        unseen_acc: ev.unseen.mean,
        overall_acc: ev.overall.mean,
        seen_worst10: ev.seen.worst10,
        unseen_worst10: ev.unseen.worst10,
        lr: st.lr,
        seconds: elapsed(),
        seen_median: ev.seen.median,
        unseen_median: ev.unseen.median,
        overall_median: ev.overall.median,
        overall_worst10: ev.overall.worst10,
        rpo_objective: st.objective,
        val_acc: ev.val.n ? ev.val.mean : NaN,
      };
      const prevBest = best();
      rows.push(row);
      if (!prevBest || row.overall_acc > prevBest.overall_acc) {
        await saveCheckpoint(`${outDir}/best.safetensors`, state.params, config, { epoch: String(state.epoch) });
        await writeFileAtomic(`${outDir}/best_users.json`, JSON.stringify(ev.users));
      }
      lastUsers = ev.users;
      await writeFileAtomic(
        `${outDir}/metrics.csv`,
        toCsv(METRICS_HEADER, rows.map((r) => METRICS_HEADER.map((h) => r[h]))),
      );
      const eta = (elapsed() - secondsOffset) / ranThisCall * (config.epochs - state.epoch);
      log.line(
        `epoch ${state.epoch}/${config.epochs}  loss ${st.metaLoss.toFixed(4)}  seen ${pct(ev.seen.mean)}  unseen ${
          pct(ev.unseen.mean)
        }  overall ${pct(ev.overall.mean)}  worst10 ${pct(ev.seen.worst10)}/${pct(ev.unseen.worst10)}  lr ${
          st.lr.toExponential(2)
        }  ${(st.users / st.seconds).toFixed(0)} users/s  ETA ${formatDuration(eta)}`,
      );
    }
    if (state.epoch % config.saveFreq === 0 || isLast) {
      await saveCheckpoint(`${outDir}/epoch_${state.epoch}.safetensors`, state.params, config, {
        epoch: String(state.epoch),
      });
      await saveResumeState(resumePath, state, config);
    }
  }
  if (state.epoch < config.epochs) {
    log.line(`stopped after epoch ${state.epoch}; continue with --resume ${outDir}`);
  }
  return await finishRun(outDir, config, rows, lastUsers, { seen: seen.length, unseen: unseen.length }, elapsed(), log);
}

/**
 * Where a run starts: the resume state (with the metrics rows written so far), or fresh
 * parameters (from --init, mrm-p's data-driven start, or a random init) and config.json.
 */
async function startRun(
  store: EmbeddingStore,
  config: TrainConfig,
  opts: RunOptions,
  log: RunLog,
): Promise<{
  state: TrainState;
  config: TrainConfig;
  rows: Record<string, number>[];
  tasks?: { seen: UserTask[]; unseen: UserTask[] };
}> {
  const { outDir } = opts;
  const resumePath = `${outDir}/resume.safetensors`;
  let state: TrainState;
  let tasks: { seen: UserTask[]; unseen: UserTask[] } | undefined;
  let rows: Record<string, number>[] = [];
  if (opts.resume) {
    if (!(await exists(resumePath))) {
      throw new ConfigError(
        `--resume ${outDir}: no resume.safetensors there (the run saved none yet, or this is not a run folder)`,
      );
    }
    const r = await loadResumeState(resumePath);
    state = r.state;
    config = r.config;
    if (state.params.dim !== store.dim) {
      throw new ConfigError(
        `--resume ${outDir}: the run's weights expect H=${state.params.dim} but the store ${store.prefix} has H=${store.dim}`,
      );
    }
    if (await exists(`${outDir}/metrics.csv`)) {
      const [head, ...body] = parseCsv(await Deno.readTextFile(`${outDir}/metrics.csv`));
      rows = body.map((cells) =>
        Object.fromEntries(head.map((h, i) => [h, cells[i] === "" || cells[i] === undefined ? NaN : Number(cells[i])]))
      )
        .filter((row) => row.epoch <= state.epoch);
    }
    log.line(`resuming ${outDir} after epoch ${state.epoch} (step ${state.step})`);
  } else {
    let params: MrmParams;
    if (opts.init) {
      params = (await loadCheckpoint(opts.init, { dim: store.dim })).params;
      const k = params.layers.map((l) => l.out).join(",");
      if (k !== config.hiddenSizes.join(",") || Boolean(params.layers[0].bias) !== config.useBias) {
        log.line(`--init ${opts.init}: using its architecture (hidden ${k}, bias ${Boolean(params.layers[0].bias)})`);
        config = { ...config, hiddenSizes: params.layers.map((l) => l.out), useBias: Boolean(params.layers[0].bias) };
      }
    } else if (config.method === "mrm-p") {
      tasks = prepareTasks(store, config);
      if (config.transductive) {
        log.line(`mrm-p start: the seen users' train pairs and the ${tasks.unseen.length} unseen users' support pairs`);
      }
      params = await initPersonal(store.embeddings, store.dim, personalStartUsers(tasks, config), {
        k: config.hiddenSizes[0],
        ridge: config.ridge ?? MRM_P_DEFAULTS.ridge,
        shrink: config.shrink ?? MRM_P_DEFAULTS.shrink,
        seed: config.seed,
      });
    } else {
      params = initParams(store.dim, { hiddenSizes: config.hiddenSizes, useBias: config.useBias, seed: config.seed });
    }
    if (config.method === "mrm-p" && !isPersonal(params)) {
      throw new ConfigError(`--init ${opts.init}: a release MRM checkpoint cannot start an mrm-p run (no prior)`);
    }
    if (config.method !== "mrm-p" && isPersonal(params)) {
      config = { ...config, method: "mrm-p", ridge: config.ridge ?? 1 };
      log.line(`--init ${opts.init}: an mrm-p checkpoint; training continues as mrm-p`);
    }
    state = initialState(params);
    await writeFileAtomic(
      `${outDir}/config.json`,
      JSON.stringify({ ...config, init: opts.init ?? null, dim: store.dim }, null, 2) + "\n",
    );
  }
  return { state, config, rows, tasks };
}

/** The run's closing outputs: summary.json, users.csv, the charts and the closing log lines. */
async function finishRun(
  outDir: string,
  config: TrainConfig,
  rows: Record<string, number>[],
  lastUsers: UserResult[] | undefined,
  users: { seen: number; unseen: number },
  seconds: number,
  log: RunLog,
): Promise<RunSummary> {
  const best = () =>
    rows.reduce<Record<string, number> | undefined>((b, r) => (!b || r.overall_acc > b.overall_acc ? r : b), undefined);
  const b = best(), l = rows[rows.length - 1];
  if (!b || !l) throw new ConfigError("no evaluation was run (increase --epochs or lower --log_freq)");
  const summary: RunSummary = {
    best: {
      ...rowToReport(b),
      selection: "best overall test accuracy over evaluated epochs (the release's protocol: selected on the test set)",
    },
    last: { ...rowToReport(l), selection: "last evaluated epoch (no selection on test)" },
    users,
    seconds,
    outDir,
  };
  await writeFileAtomic(`${outDir}/summary.json`, JSON.stringify(summary, null, 2) + "\n");
  const bestUsers: UserResult[] = JSON.parse(await Deno.readTextFile(`${outDir}/best_users.json`));
  const lastAcc = new Map((lastUsers ?? []).map((u) => [u.id, u.accuracy]));
  await writeFileAtomic(
    `${outDir}/users.csv`,
    toCsv(
      ["user_id", "group", "n_train", "n_test", "accuracy", "accuracy_last"],
      bestUsers.map((u) => [u.id, u.group, u.nTrain, u.nTest, u.accuracy, lastAcc.get(u.id)]),
    ),
  );
  try {
    // loaded on demand: vega adds ~24 MiB that training itself does not need
    const { learningCurveSpec, userHistogramSpec, writeChart } = await import("../report/charts.ts");
    const series = rows.flatMap((r) => [
      { epoch: r.epoch, series: "seen", acc: r.seen_acc },
      { epoch: r.epoch, series: "unseen", acc: r.unseen_acc },
      { epoch: r.epoch, series: "overall", acc: r.overall_acc },
      { epoch: r.epoch, series: "seen worst 10%", acc: r.seen_worst10 },
      { epoch: r.epoch, series: "unseen worst 10%", acc: r.unseen_worst10 },
    ]);
    await writeChart(
      `${outDir}/curves.svg`,
      learningCurveSpec(series, `${config.dataset}: test accuracy per evaluation`),
    );
    await writeChart(
      `${outDir}/users.svg`,
      userHistogramSpec(
        bestUsers.map((u) => ({ group: u.group, accuracy: u.accuracy })),
        `per-user accuracy at epoch ${b.epoch}`,
      ),
    );
  } catch (e) {
    log.line(`(plots skipped: ${(e as Error).message})`);
  }
  log.line(
    `best (selected on test, epoch ${b.epoch}): seen ${pct(b.seen_acc)}  unseen ${pct(b.unseen_acc)}  overall ${
      pct(b.overall_acc)
    }`,
  );
  log.line(
    `last (epoch ${l.epoch}): seen ${pct(l.seen_acc)}  unseen ${pct(l.unseen_acc)}  overall ${pct(l.overall_acc)}`,
  );
  log.line(`run folder: ${outDir}`);
  log.close();
  return summary;
}
