/** `deno task sweep`: train a grid of settings, select on held-out validation, report test. */
import { parseGrid, runSweep } from "../lib/compare/sweep.ts";
import { ConfigError } from "../lib/errors.ts";
import { personalConfig, preset, type TrainConfig, validateConfig } from "../lib/presets.ts";
import { RunLog } from "../lib/run/log.ts";
import {
  applyConfigFlags,
  COMPARISON_OPTIONS,
  CONFIG_FLAGS,
  configHelp,
  flagOptions,
  main,
  openComparisonStore,
  parse,
  timestamped,
} from "./_cli.ts";

function applyAndCopy(c: TrainConfig, s: Record<string, string>): TrainConfig {
  const copy = structuredClone(c);
  applyConfigFlags(copy, s);
  return copy;
}

await main(async () => {
  const v = parse(
    Deno.args,
    flagOptions({ ...COMPARISON_OPTIONS, grid: { type: "string", multiple: true } }),
  );
  if (v.help) {
    console.log(`deno task sweep --data PREFIX --grid inner_lr=1e-3,1e-2 --grid train_inner_epochs=1,5 [flags]
Trains every combination (plus the release setting), holding out --val_holdout (default 0.2) of
each seen user's train conversations; chooses the best validation accuracy (never test) and
reports its test accuracy beside the release setting's, with the hardest users' breakdown.
Writes output/sweep/<timestamp>/{sweep.csv,users.csv,sweep.svg}.
  --data PREFIX        the store (default data/emb/synthetic/prism); --embed_pt/--meta_json work too
  --out DIR            output folder (default output/sweep/<timestamp>)
  --backend NAME       auto, cpu, wasm or webgpu (default auto: each run on webgpu where the measured rule
                       expects it to finish sooner, else wasm)
  --grid FLAG=V1,V2    repeatable; FLAG is a release flag name (hidden_layers values: 2 or 4-2)
  --preset NAME        base settings (default: synthetic with a .truth.json, else prism/reddit)
  --method mrm-p       sweep mrm-p around its own defaults (the reference row is then those defaults)
${configHelp(preset("synthetic"))}`);
    return;
  }
  const grid = parseGrid((v.grid as string[] | undefined) ?? []);
  if (grid.length === 0) throw new ConfigError("give at least one --grid FLAG=V1,V2");
  for (const a of grid) {
    if (!CONFIG_FLAGS[a.flag]) throw new ConfigError(`--grid ${a.flag}: not a training flag (see --help)`);
  }
  const { store, truth, name, config: base, backend, auto } = await openComparisonStore(v, { valHoldout: 0.2 });
  // every value of every axis is checked before the first run, not when its run comes up
  for (const a of grid) {
    for (const value of a.values) {
      try {
        validateConfig(applyAndCopy(base, { [a.flag]: value }));
      } catch (e) {
        throw new ConfigError(`--grid ${a.flag}=${value}: ${(e as Error).message}`);
      }
    }
  }
  const prefix = base.data;
  const apply = (c: TrainConfig, s: Record<string, string>) => {
    applyConfigFlags(c, s);
    return validateConfig(c);
  };
  // the reference value of each swept flag: the preset's (before any override), or mrm-p's default
  const reference = base.method === "mrm-p" ? personalConfig(preset(name)) : preset(name);
  const rec = reference as unknown as Record<string, unknown>;
  const release = Object.fromEntries(grid.map((a) => {
    const d = rec[CONFIG_FLAGS[a.flag].key];
    return [a.flag, Array.isArray(d) ? d.join(",") : String(d)];
  }));
  const outDir = typeof v.out === "string" ? v.out : timestamped("output/sweep", name);
  const log = new RunLog();
  log.line(
    `sweep on ${prefix}, preset ${name}, backend ${backend}, validation holdout ${base.valHoldout} -> ${outDir}`,
  );
  const r = await runSweep(store, base, grid, release, apply, { outDir, log, truth, autoBackend: auto });
  log.line(
    `\nchosen on validation: ${r.chosen.name}: test overall ${(100 * r.chosen.overall).toFixed(1)} vs release ${
      (100 * r.release.overall).toFixed(1)
    }`,
  );
});
