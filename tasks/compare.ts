/** `deno task compare`: MRM against the alternatives on one store, same splits and evaluation. */
import { type BackendName, initBackend } from "../lib/backend.ts";
import { METHODS, parseMethods, runCompare } from "../lib/compare/compare.ts";
import { detectSplitStyle } from "../lib/data/splits.ts";
import { ConfigError } from "../lib/errors.ts";
import { readTruth } from "../lib/eval/oracle.ts";
import { preset, validateConfig } from "../lib/presets.ts";
import { RunLog } from "../lib/run/log.ts";
import { requireStore, resolvePrefix } from "../lib/run/store_path.ts";
import { loadStore } from "../lib/store/store.ts";
import { applyConfigFlags, configHelp, flagOptions, main, parse, timestamped } from "./_cli.ts";

await main(async () => {
  const v = parse(
    Deno.args,
    flagOptions({
      data: { type: "string" },
      preset: { type: "string" },
      methods: { type: "string" },
      repeat: { type: "string" },
      shots: { type: "string" },
      out: { type: "string" },
      backend: { type: "string" },
      linear_epochs: { type: "string" },
      linear_lr: { type: "string" },
    }),
  );
  if (v.help) {
    console.log(`deno task compare --data PREFIX [--methods ${METHODS.join(",")}] [flags]
Runs each method on the same users, splits and evaluation and writes output/compare/<timestamp>/:
results.csv, users.csv, table.txt, accuracy.svg, users.svg (and fewshot.csv/.svg with --shots).
  --data PREFIX        store (default data/emb/synthetic/prism)
  --preset NAME        settings: prism, reddit, reddit100, synthetic (default: synthetic for stores
                       with a .truth.json, else prism or reddit by the store's split field)
  --methods LIST       comma-separated (default: all; rm is skipped without scores)
  --repeat N           seeds seed..seed+N-1 (default 1)
  --shots LIST         few-shot curve for unseen users, e.g. 5,10,20
  --linear_epochs N    epochs of bt/lore (default: --epochs)
  --linear_lr X        Adam lr of bt/lore (default 0.01)
  --out DIR            output folder
  --backend cpu|wasm|webgpu
Training flags pass through to the MRM variants (defaults of the synthetic preset shown):
${configHelp(preset("synthetic"))}`);
    return;
  }
  const prefix = resolvePrefix(v as Record<string, string>, "data/emb/synthetic/prism");
  await requireStore(prefix, "synthetic");
  const backend = await initBackend((v.backend ?? "auto") as BackendName | "auto");
  const store = await loadStore(prefix);
  const truth = await readTruth(prefix);
  const name = typeof v.preset === "string" ? v.preset : truth ? "synthetic" : detectSplitStyle(store.meta);
  const config = preset(name);
  config.splitStyle = detectSplitStyle(store.meta);
  applyConfigFlags(config, v);
  config.data = prefix;
  validateConfig(config);
  const repeat = v.repeat === undefined ? 1 : Number(v.repeat);
  if (!Number.isInteger(repeat) || repeat < 1) {
    throw new ConfigError(`--repeat expects a positive integer, got '${v.repeat}'`);
  }
  const shots = typeof v.shots === "string" ? v.shots.split(",").map(Number) : undefined;
  if (shots && shots.some((s) => !Number.isInteger(s) || s < 1)) {
    throw new ConfigError(`--shots expects positive integers, got '${v.shots}'`);
  }
  const num = (f: string) => (v[f] === undefined ? undefined : Number(v[f]));
  const outDir = typeof v.out === "string" ? v.out : timestamped("output/compare", name);
  const log = new RunLog();
  log.line(`compare on ${prefix} (${store.n} rows, H=${store.dim}), preset ${name}, backend ${backend} -> ${outDir}`);
  await runCompare(store, config, {
    methods: typeof v.methods === "string" ? parseMethods(v.methods) : [...METHODS],
    seeds: Array.from({ length: repeat }, (_, i) => config.seed + i),
    outDir,
    shots,
    truth,
    log,
    linear: { epochs: num("linear_epochs"), lr: num("linear_lr") },
  });
  log.line(
    `\nwrote ${outDir}/{results.csv,users.csv,table.txt,accuracy.svg,users.svg${
      shots ? ",fewshot.csv,fewshot.svg" : ""
    }}`,
  );
});
