/** `deno task train:<preset>`: meta-train MRM with the release's hyperparameters. */
import { applyGpuStoreFlag, type BackendName, chooseBackend } from "../lib/backend.ts";
import { ConfigError, FormatError } from "../lib/errors.ts";
import { oracleAccuracy, readTruth } from "../lib/eval/oracle.ts";
import { personalConfig, preset, shortConfig, type TrainConfig, validateConfig } from "../lib/presets.ts";
import { RunLog } from "../lib/run/log.ts";
import { prepareTasks, type RunSummary, runTraining } from "../lib/run/run.ts";
import { requireStore, resolvePrefix } from "./_store_path.ts";
import { accuracyHeader, accuracyRow, meanStd, table } from "../lib/report/table.ts";
import { loadStore } from "../lib/store/store.ts";
import { writeFileAtomic } from "../lib/fsutil.ts";
import { applyConfigFlags, configHelp, flagOptions, main, parse, timestamped, uniqueFolder } from "./_cli.ts";

await main(async () => {
  const opts = flagOptions({
    preset: { type: "string" },
    data: { type: "string" },
    embed_pt: { type: "string" },
    meta_json: { type: "string" },
    out: { type: "string" },
    init: { type: "string" },
    resume: { type: "string" },
    overwrite: { type: "boolean" },
    backend: { type: "string" },
    gpu_store_gib: { type: "string" },
    repeat: { type: "string" },
  });
  const v = parse(Deno.args, opts);
  const config: TrainConfig = preset(String(v.preset ?? "prism"));
  if (v.help) {
    console.log(`deno task train:${config.dataset} [flags]   (preset '${config.dataset}', release hyperparameters)
  --data PREFIX          embedding store prefix (default ${config.data})
  --embed_pt/--meta_json the release's names for the store files (same prefix)
  --out DIR              run folder (default output/${config.dataset}/<timestamp>_<config>)
  --init CKPT            start from a checkpoint's weights (ours, or the release's model.pt)
  --resume RUN           continue an interrupted run folder from its last checkpoint
  --overwrite            empty an existing --out folder first (otherwise it is refused)
  --backend auto|cpu|wasm|webgpu  tfjs backend (auto: webgpu on a hardware GPU where the measured rule expects the
                             run to finish sooner, else wasm; the reason is printed; see README)
  --gpu_store_gib X      webgpu: keep at most X GiB of the store on the GPU, upload the rest as steps need it
  --repeat N             run seeds seed..seed+N-1 and report mean ± std (default 1)
${configHelp(config)}`);
    return;
  }
  const overridden = applyConfigFlags(config, v);
  if (config.method === "mrm-p" && typeof v.resume !== "string") {
    Object.assign(config, personalConfig(config, overridden));
  }
  if (typeof v.resume === "string" && overridden.length) {
    console.error(
      `warning: --resume continues with the run's saved settings; ignoring ${
        overridden.map((f) => "--" + f).join(", ")
      }`,
    );
  }
  config.data = resolvePrefix(v as Record<string, string>, config.data);
  validateConfig(config);
  const repeat = v.repeat === undefined ? 1 : Number(v.repeat);
  if (!Number.isInteger(repeat) || repeat < 1) {
    throw new ConfigError(`--repeat expects a positive integer, got '${v.repeat}'`);
  }
  const backendFlag = v.backend === undefined ? "auto" : String(v.backend);
  if (!["auto", "cpu", "wasm", "webgpu"].includes(backendFlag)) {
    throw new ConfigError(`--backend must be auto, cpu, wasm or webgpu, got '${backendFlag}'`);
  }
  applyGpuStoreFlag(v.gpu_store_gib);

  let resumeDir: string | undefined;
  if (typeof v.resume === "string") {
    resumeDir = v.resume;
    const text = await Deno.readTextFile(`${resumeDir}/config.json`).catch(() => {
      throw new ConfigError(`--resume ${resumeDir}: no config.json there (not a run folder)`);
    });
    let saved: TrainConfig;
    try {
      saved = JSON.parse(text);
    } catch (e) {
      throw new FormatError(`${resumeDir}/config.json`, `not valid JSON (${(e as Error).message})`);
    }
    config.data = saved.data;
  }
  await requireStore(config.data, config.dataset);
  const log = new RunLog();
  log.line(`loading ${config.data}`);
  const store = await loadStore(config.data);
  const split = prepareTasks(store, config);
  const { backend, reason } = await chooseBackend(backendFlag as BackendName | "auto", {
    epochs: config.epochs * repeat,
    seenUsers: split.seen.length,
    evaluations: Math.ceil(config.epochs / Math.max(1, config.logFreq)) * repeat,
    users: split.seen.length + split.unseen.length,
    storeBytes: store.embeddings.byteLength,
    oneLayer: config.hiddenSizes.length === 1,
    usersPerStep: config.tasksPerBatch,
  });
  log.line(`backend ${backend}${reason ? ` (--backend auto: ${reason})` : ""}`);
  const truth = await readTruth(config.data, { meta: store.meta });

  const summaries: RunSummary[] = [];
  if (v.out === "") throw new ConfigError("--out needs a folder name");
  const baseOut = typeof v.out === "string"
    ? v.out
    : await uniqueFolder(timestamped(`output/${config.dataset}`, shortConfig(config)));
  for (let r = 0; r < repeat; r++) {
    const c = { ...config, seed: config.seed + r };
    const outDir = resumeDir ?? (repeat > 1 ? `${baseOut}/seed_${c.seed}` : baseOut);
    const s = await runTraining(store, c, {
      outDir,
      init: v.init as string | undefined,
      resume: Boolean(resumeDir),
      overwrite: v.overwrite === true,
      log,
    });
    if (truth) {
      const { seen, unseen } = prepareTasks(store, c);
      const o = oracleAccuracy(truth, [...seen, ...unseen]);
      const fig = (x: RunSummary["best"]) => ({
        seen: { mean: x.seen_acc, worst10: x.seen_worst10 },
        unseen: { mean: x.unseen_acc, worst10: x.unseen_worst10 },
        overall: { mean: x.overall_acc, worst10: NaN },
      });
      const name = c.method === "mrm-p" ? (c.transductive ? "mrm-p --transductive" : "mrm-p") : "MRM";
      console.log(
        "\n" + table(accuracyHeader(), [
          accuracyRow(`${name} (best, on test)`, fig(s.best)),
          accuracyRow(`${name} (last)`, fig(s.last)),
          accuracyRow("oracle (true reward)", o),
        ]),
      );
      const sum = JSON.parse(await Deno.readTextFile(`${outDir}/summary.json`));
      sum.oracle = {
        seen_acc: o.seen.mean,
        unseen_acc: o.unseen.mean,
        overall_acc: o.overall.mean,
        seen_worst10: o.seen.worst10,
        unseen_worst10: o.unseen.worst10,
      };
      await writeFileAtomic(`${outDir}/summary.json`, JSON.stringify(sum, null, 2) + "\n");
    }
    summaries.push(s);
  }
  if (repeat > 1) {
    const agg: Record<string, string> = {};
    const rows: string[][] = [];
    for (const sel of ["best", "last"] as const) {
      const row: string[] = [sel];
      for (const k of ["seen_acc", "unseen_acc", "overall_acc", "seen_worst10", "unseen_worst10"] as const) {
        const ms = meanStd(summaries.map((s) => s[sel][k]));
        agg[`${sel}.${k}`] = ms.text;
        row.push(ms.text);
      }
      rows.push(row);
    }
    console.log(`\n${repeat} seeds (${config.seed}..${config.seed + repeat - 1}), mean ± std:`);
    console.log(table(["", "seen", "unseen", "overall", "seen worst10", "unseen worst10"], rows));
    await writeFileAtomic(
      `${baseOut}/repeat.json`,
      JSON.stringify({ seeds: summaries.map((_, i) => config.seed + i), summary: agg, runs: summaries }, null, 2) +
        "\n",
    );
  }
});
