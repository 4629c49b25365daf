/**
 * `deno task demo`: the whole pipeline on built-in synthetic data, no downloads:
 * synth (PRISM-like) -> meta-train -> test -> a table of MRM vs. the oracle.
 */
import { initBackend } from "../lib/backend.ts";
import { writeSynthetic } from "../lib/data/synthetic.ts";
import { evaluate } from "../lib/eval/evaluate.ts";
import { oracleAccuracy } from "../lib/eval/oracle.ts";
import { initParams } from "../lib/model/params.ts";
import { preset, shortConfig } from "../lib/presets.ts";
import { loadCheckpoint } from "../lib/run/checkpoint.ts";
import { RunLog } from "../lib/run/log.ts";
import { prepareTasks, runTraining } from "../lib/run/run.ts";
import { accuracyHeader, accuracyRow, table } from "../lib/report/table.ts";
import { loadStore } from "../lib/store/store.ts";
import { main, parse, timestamped } from "./_cli.ts";
import { ConfigError } from "../lib/errors.ts";

await main(async () => {
  const v = parse(Deno.args, {
    help: { type: "boolean", short: "h" },
    users: { type: "string" },
    dim: { type: "string" },
    epochs: { type: "string" },
  });
  if (v.help) {
    return console.log(
      "deno task demo [--users 1000] [--dim 512] [--epochs N]: synthetic store -> train -> test -> table",
    );
  }
  // every value is checked before anything is written
  const int = (flag: string, d: number, min: number) => {
    const raw = v[flag];
    if (raw === undefined) return d;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min) throw new ConfigError(`--${flag} expects an integer >= ${min}, got '${raw}'`);
    return n;
  };
  const epochs = int("epochs", preset("synthetic").epochs, 1), users = int("users", 1000, 4), dim = int("dim", 512, 4);
  const t0 = performance.now();
  const backend = await initBackend("auto");
  const config = preset("synthetic");
  config.epochs = epochs;
  const prefix = config.data;
  console.log(`1/3 synth: ${users} PRISM-like users, H=${dim} (20% hard: contrarian or long-tail) -> ${prefix}`);
  const s = await writeSynthetic(prefix, { preset: "prism", users, dim, seed: 42 });
  console.log(`    ${s.pairs} pairs, ${s.rows} embedding rows`);
  const store = await loadStore(prefix);
  const outDir = timestamped("output/synthetic", shortConfig(config));
  console.log(
    `2/3 meta-train (backend ${backend}): ${config.epochs} epochs, inner Adam ${config.trainInnerEpochs} steps at lr ${config.innerLr}, RPO rho ${config.rpoRho} gamma ${config.rpoGamma} -> ${outDir}`,
  );
  const summary = await runTraining(store, config, { outDir, log: new RunLog() });
  console.log(`3/3 test: ${outDir}/best.safetensors and epoch_${config.epochs}.safetensors`);
  const { seen, unseen } = prepareTasks(store, config);
  const all = [...seen, ...unseen];
  const opts = { innerLr: config.innerLr, innerSteps: config.evalInnerEpochs };
  const init = await evaluate(
    initParams(store.dim, { hiddenSizes: config.hiddenSizes, seed: config.seed }),
    store.embeddings,
    all,
    opts,
  );
  const best = await evaluate((await loadCheckpoint(`${outDir}/best.safetensors`)).params, store.embeddings, all, opts);
  const last = await evaluate(
    (await loadCheckpoint(`${outDir}/epoch_${config.epochs}.safetensors`)).params,
    store.embeddings,
    all,
    opts,
  );
  const o = oracleAccuracy(s.truth, all);
  console.log(`\nUser-level test accuracy (%), ${seen.length} seen + ${unseen.length} unseen users:`);
  console.log(table(accuracyHeader(), [
    accuracyRow("random init, adapted", init),
    accuracyRow(`MRM last (epoch ${summary.last.epoch})`, last),
    accuracyRow(`MRM best (epoch ${summary.best.epoch}, on test)`, best),
    accuracyRow("oracle (true reward)", o),
  ]));
  console.log(`\nrun folder: ${outDir}  (${((performance.now() - t0) / 1000).toFixed(1)} s in all)`);
});
