/** `deno task test:<preset>`: evaluate a checkpoint with the settings stored in its run. */
import { applyGpuStoreFlag, type BackendName, chooseBackend } from "../lib/backend.ts";
import { ConfigError, FormatError } from "../lib/errors.ts";
import { evaluate } from "../lib/eval/evaluate.ts";
import { oracleAccuracy, readTruth } from "../lib/eval/oracle.ts";
import { writeFileAtomic } from "../lib/fsutil.ts";
import { preset, type TrainConfig, validateConfig } from "../lib/presets.ts";
import { loadCheckpoint } from "../lib/run/checkpoint.ts";
import { isPersonal } from "../lib/model/params.ts";
import { toCsv } from "../lib/run/csv.ts";
import { newestRun, runCheckpoint } from "./_find.ts";
import { prepareTasks } from "../lib/run/run.ts";
import { requireStore, resolvePrefix } from "./_store_path.ts";
import { accuracyHeader, accuracyRow, table } from "../lib/report/table.ts";
import { loadStore } from "../lib/store/store.ts";
import { applyConfigFlags, configHelp, flagOptions, main, parse } from "./_cli.ts";

const SPLIT_FLAGS = ["seed", "seen_train_limit", "unseen_train_limit"];
/** The settings evaluation reads: adaptation and which users/pairs are scored (the rest only shape training). */
const EVAL_FLAGS = ["inner_lr", "eval_inner_epochs", "val_holdout", ...SPLIT_FLAGS];

await main(async () => {
  const v = parse(
    Deno.args,
    flagOptions({
      preset: { type: "string" },
      ckpt: { type: "string" },
      run: { type: "string" },
      data: { type: "string" },
      embed_pt: { type: "string" },
      meta_json: { type: "string" },
      backend: { type: "string" },
      gpu_store_gib: { type: "string" },
      out: { type: "string" },
    }, EVAL_FLAGS),
  );
  const dataset = String(v.preset ?? "prism");
  if (v.help) {
    console.log(`deno task test:${dataset} [--ckpt FILE | --run DIR] [flags]
Evaluates a checkpoint (default: best of the newest run in output/${dataset}) with the
settings saved in the run; overrides are applied with a warning.
  --data PREFIX   store (default: the run's)
  --backend auto|cpu|wasm|webgpu  (auto: webgpu where the measured rule expects it to be faster; see README)
  --gpu_store_gib X  webgpu: keep at most X GiB of the store on the GPU, upload the rest as it is needed
  --out FILE      write per-user results as CSV
Evaluation settings (default: the run's; the values shown are the preset's):
${configHelp(preset(dataset), EVAL_FLAGS)}`);
    return;
  }
  const run = typeof v.run === "string"
    ? v.run
    : typeof v.ckpt === "string"
    ? undefined
    : await newestRun(`output/${dataset}`);
  if (run !== undefined && !(await Deno.stat(run).then((s) => s.isDirectory).catch(() => false))) {
    throw new ConfigError(`--run ${run}: no such run folder`);
  }
  const ckpt = typeof v.ckpt === "string" ? v.ckpt : await runCheckpoint(run!);
  const loaded = await loadCheckpoint(ckpt);
  let config: TrainConfig;
  if (run) {
    const file = `${run}/config.json`;
    const text = await Deno.readTextFile(file).catch(() => {
      throw new ConfigError(`--run ${run}: no config.json there (not a run folder)`);
    });
    try {
      config = JSON.parse(text);
    } catch (e) {
      throw new FormatError(file, `not valid JSON (${(e as Error).message})`);
    }
  } else if (loaded.config) {
    config = loaded.config;
  } else {
    console.error(`warning: ${ckpt} carries no run configuration; using the '${dataset}' preset`);
    config = preset(dataset);
  }
  const overridden = applyConfigFlags(config, v);
  const splitChanges = overridden.filter((f) => SPLIT_FLAGS.includes(f));
  if (splitChanges.length) {
    console.error(
      `\n!!! WARNING: --${
        splitChanges.join(", --")
      } differ from training: the seen/unseen users and train/test pairs change,\n!!! so "seen" users may not be the ones meta-trained on and results are not comparable.\n`,
    );
  } else if (overridden.length) {
    console.error(`note: overriding ${overridden.map((f) => "--" + f).join(", ")} from the run's settings`);
  }
  config.data = resolvePrefix(v as Record<string, string>, config.data);
  validateConfig(config);
  applyGpuStoreFlag(v.gpu_store_gib);
  await requireStore(config.data, config.dataset);
  const store = await loadStore(config.data);
  if (loaded.params.dim !== store.dim) {
    throw new ConfigError(`${ckpt}: checkpoint expects H=${loaded.params.dim} but ${config.data} has H=${store.dim}`);
  }
  const { seen, unseen } = prepareTasks(store, config);
  const { backend, reason } = await chooseBackend((v.backend ?? "auto") as BackendName | "auto", {
    epochs: 0,
    seenUsers: seen.length,
    evaluations: 1,
    users: seen.length + unseen.length,
    storeBytes: store.embeddings.byteLength,
    oneLayer: loaded.params.layers.length === 1,
    usersPerStep: config.tasksPerBatch,
  });
  if (reason) console.error(`backend ${backend} (--backend auto: ${reason})`);
  const t0 = performance.now();
  const r = await evaluate(loaded.params, store.embeddings, [...seen, ...unseen], {
    innerLr: config.innerLr,
    innerSteps: config.evalInnerEpochs,
  });
  const secs = (performance.now() - t0) / 1000;
  console.log(
    `${ckpt}  (${config.data}, backend ${backend}, ${seen.length} seen + ${unseen.length} unseen users, ${
      secs.toFixed(2)
    } s)`,
  );
  const rows: (string | number)[][] = [accuracyRow(isPersonal(loaded.params) ? "mrm-p" : "MRM", r, { medians: true })];
  const truth = await readTruth(config.data, { meta: store.meta });
  if (truth) rows.push(accuracyRow("oracle", oracleAccuracy(truth, [...seen, ...unseen]), { medians: true }));
  console.log(table(accuracyHeader({ medians: true }), rows));
  if (typeof v.out === "string") {
    await writeFileAtomic(
      v.out,
      toCsv(
        ["user_id", "group", "n_train", "n_test", "accuracy"],
        r.users.map((u) => [u.id, u.group, u.nTrain, u.nTest, u.accuracy]),
      ),
    );
  }
});
