/** `deno task compare`: MRM against the alternatives on one store, same splits and evaluation. */
import { DEFAULT_METHODS, METHODS, parseMethods, runCompare } from "../lib/compare/compare.ts";
import { ConfigError } from "../lib/errors.ts";
import { preset } from "../lib/presets.ts";
import { RunLog } from "../lib/run/log.ts";
import { COMPARISON_OPTIONS, configHelp, flagOptions, main, openComparisonStore, parse, timestamped } from "./_cli.ts";

await main(async () => {
  const v = parse(
    Deno.args,
    flagOptions({
      ...COMPARISON_OPTIONS,
      methods: { type: "string" },
      repeat: { type: "string" },
      shots: { type: "string" },
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
  --methods LIST       comma-separated (default: all but mrm-pt; rm is skipped without scores, subspace
                       without a truth file; mrm-p takes its own defaults for unnamed flags; mrm-pt is
                       mrm-p whose start also fits the unseen users' support pairs, another protocol)
  --repeat N           seeds seed..seed+N-1 (default 1)
  --shots LIST         few-shot curve for unseen users, e.g. 5,10,20
  --linear_epochs N    epochs of bt/lore (default: --epochs)
  --linear_lr X        Adam lr of bt/lore (default 0.01)
  --out DIR            output folder
  --backend auto|cpu|wasm|webgpu  (auto: the meta-trained methods on webgpu where the measured rule expects them to
                   finish sooner, the rest on wasm; see README)
Training flags pass through to the MRM variants (defaults of the synthetic preset shown):
${configHelp(preset("synthetic"))}`);
    return;
  }
  const { store, truth, name, config, backend, explicit, auto } = await openComparisonStore(v);
  const prefix = config.data;
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
    methods: typeof v.methods === "string" ? parseMethods(v.methods) : [...DEFAULT_METHODS],
    seeds: Array.from({ length: repeat }, (_, i) => config.seed + i),
    outDir,
    shots,
    truth,
    log,
    linear: { epochs: num("linear_epochs"), lr: num("linear_lr") },
    explicit,
    autoBackend: auto,
  });
  log.line(
    `\nwrote ${outDir}/{results.csv,users.csv,table.txt,accuracy.svg,users.svg${
      shots ? ",fewshot.csv,fewshot.svg" : ""
    }}`,
  );
});
