/** Shared CLI plumbing for tasks/: release-named flags <-> TrainConfig, errors -> exit codes. */
import { parseArgs } from "node:util";
import { ConfigError, FormatError } from "../lib/errors.ts";
import { personalConfig, preset, type TrainConfig, validateConfig } from "../lib/presets.ts";
import { type BackendName, initBackend } from "../lib/backend.ts";
import { detectSplitStyle } from "../lib/data/splits.ts";
import type { SynthTruth } from "../lib/data/synthetic.ts";
import { readTruth } from "../lib/eval/oracle.ts";
import { requireStore, resolvePrefix } from "./_store_path.ts";
import { type EmbeddingStore, loadStore } from "../lib/store/store.ts";

type Kind = "number" | "int" | "bool" | "list" | "string";
/** Release flag name -> config field, type and help. */
export const CONFIG_FLAGS: Record<string, { key: keyof TrainConfig; kind: Kind; help: string }> = {
  inner_lr: { key: "innerLr", kind: "number", help: "inner-loop Adam learning rate" },
  meta_lr: { key: "metaLr", kind: "number", help: "outer Adam learning rate" },
  train_inner_epochs: { key: "trainInnerEpochs", kind: "int", help: "inner Adam steps during meta-training" },
  eval_inner_epochs: { key: "evalInnerEpochs", kind: "int", help: "inner Adam steps when evaluating" },
  tasks_per_batch: { key: "tasksPerBatch", kind: "int", help: "users per outer step" },
  epochs: { key: "epochs", kind: "int", help: "meta-training epochs" },
  warmup_ratio: { key: "warmupRatio", kind: "number", help: "share of steps of linear warm-up" },
  seed: { key: "seed", kind: "int", help: "seed of splits and init" },
  val_ratio: { key: "valRatio", kind: "number", help: "share of a user's train conversations used as query" },
  log_freq: { key: "logFreq", kind: "int", help: "evaluate every N epochs" },
  save_freq: { key: "saveFreq", kind: "int", help: "checkpoint every N epochs" },
  seen_train_limit: {
    key: "seenTrainLimit",
    kind: "int",
    help: "cap on seen users' train conversations/pairs (-1 none)",
  },
  unseen_train_limit: {
    key: "unseenTrainLimit",
    kind: "int",
    help: "cap on unseen users' train conversations/pairs (-1 none)",
  },
  rpo_ratio: { key: "rpoRho", kind: "number", help: "RPO rho: tau is the (1 - rho) quantile of the batch losses" },
  rpo_gamma: { key: "rpoGamma", kind: "number", help: "RPO temperature (<= 0: hard mask)" },
  hidden_layers: { key: "hiddenSizes", kind: "list", help: "layer sizes, comma-separated (last = K)" },
  use_bias: { key: "useBias", kind: "bool", help: "biases in the base functions" },
  first_order: { key: "firstOrder", kind: "bool", help: "first-order inner step (no second-order terms)" },
  objective: { key: "objective", kind: "string", help: "rpo (the method) or mean (plain MAML)" },
  method: { key: "method", kind: "string", help: "mrm (the release method) or mrm-p (personalising, own defaults)" },
  ridge: {
    key: "ridge",
    kind: "number",
    help: "mrm-p: multiplier of the estimated prior precisions (1: as estimated)",
  },
  shrink: { key: "shrink", kind: "number", help: "mrm-p: low-rank start's nuclear-norm strength / noise level" },
  transductive: {
    key: "transductive",
    kind: "bool",
    help: "mrm-p: the start also fits the unseen users' support pairs (not the release protocol; docs/method.md §8)",
  },
  val_holdout: {
    key: "valHoldout",
    kind: "number",
    help: "share of seen users' train conversations held out for validation",
  },
};

/** One parseArgs option. */
export type FlagOption = { type: "string" | "boolean"; short?: string; multiple?: boolean };

/** parseArgs options for the config flags (all, or the names in `only`) plus extra ones. */
export function flagOptions(extra: Record<string, FlagOption>, only?: string[]): Record<string, FlagOption> {
  const o: Record<string, FlagOption> = {
    help: { type: "boolean", short: "h" },
    ...extra,
  };
  for (const [name, f] of Object.entries(CONFIG_FLAGS)) {
    if (!only || only.includes(name)) o[name] = { type: f.kind === "bool" ? "boolean" : "string" };
  }
  return o;
}

/** `--dtype` of a written store: f32, f16 or bf16 (what the safetensors writer really writes). */
export function parseStoreDtype(v: unknown): "F32" | "F16" | "BF16" {
  const d = String(v ?? "f32").toUpperCase();
  if (d !== "F32" && d !== "F16" && d !== "BF16") {
    throw new ConfigError(`--dtype must be f32, f16 or bf16, got '${v}'`);
  }
  return d;
}

/**
 * `--flag -1` as `--flag=-1` for value-taking flags, so that the release's own commands
 * (`--seen_train_limit -1 --unseen_train_limit -1`) carry over; node's parseArgs would
 * otherwise read `-1` as a short option.
 */
export function joinNegativeValues(args: string[], options: ReturnType<typeof flagOptions>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = args[i].startsWith("--") && !args[i].includes("=") ? args[i].slice(2) : undefined;
    if (name && options[name]?.type === "string" && /^-(\d|\.\d)/.test(args[i + 1] ?? "")) {
      out.push(`${args[i]}=${args[++i]}`);
    } else out.push(args[i]);
  }
  return out;
}

/** Parses argv strictly, turning unknown flags into a ConfigError. */
export function parse(
  args: string[],
  options: ReturnType<typeof flagOptions>,
): Record<string, string | boolean | string[] | undefined> {
  try {
    return parseArgs({ args: joinNegativeValues(args, options), options, strict: true, allowPositionals: false })
      .values as Record<
        string,
        string | boolean | string[] | undefined
      >;
  } catch (e) {
    const msg = (e as Error).message;
    const unknown = /Unknown option '--?([^']+)'/.exec(msg)?.[1];
    const near = unknown ? closest(unknown, Object.keys(options)) : undefined;
    if (unknown) {
      throw new ConfigError(`unknown flag '--${unknown}'${near ? `; did you mean --${near}?` : ""} (see --help)`);
    }
    throw new ConfigError(`${msg} (see --help)`);
  }
}

/** The option closest to `name` (edit distance, "-" and "_" alike), if it is close enough to be a typo. */
export function closest(name: string, options: string[]): string | undefined {
  const norm = (x: string) => x.toLowerCase().replaceAll("-", "_");
  const a = norm(name);
  let best: string | undefined, bestD = Infinity;
  for (const o of options) {
    const b = norm(o);
    const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) d[0][j] = j;
    for (let i = 1; i <= a.length; i++) {
      for (let j = 1; j <= b.length; j++) {
        d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      }
    }
    const dist = d[a.length][b.length];
    if (dist < bestD) [best, bestD] = [o, dist];
  }
  return bestD <= Math.max(2, Math.floor(a.length / 4)) ? best : undefined;
}

/** Applies config flags present in `values` onto `c`; returns the names that were set. */
export function applyConfigFlags(
  c: TrainConfig,
  values: Record<string, string | boolean | string[] | undefined>,
): string[] {
  const set: string[] = [];
  const rec = c as unknown as Record<string, unknown>;
  for (const [name, f] of Object.entries(CONFIG_FLAGS)) {
    const v = values[name];
    if (v === undefined) continue;
    set.push(name);
    if (f.kind === "bool") rec[f.key] = v === true;
    else if (f.kind === "string") rec[f.key] = String(v);
    else if (f.kind === "list") {
      const parts = String(v).split(",").map((s) => Number(s.trim()));
      if (parts.some((p) => !Number.isInteger(p) || p <= 0)) {
        throw new ConfigError(`--${name} expects positive integers separated by commas, got '${v}'`);
      }
      rec[f.key] = parts;
    } else {
      const n = Number(v);
      if (String(v).trim() === "" || !Number.isFinite(n)) {
        throw new ConfigError(`--${name} expects a number, got '${v}'`);
      }
      if (f.kind === "int" && !Number.isInteger(n)) throw new ConfigError(`--${name} expects an integer, got '${v}'`);
      rec[f.key] = n;
    }
  }
  return set;
}

/** Help text lines for the config flags with the preset's defaults. */
export function configHelp(c: TrainConfig, only?: string[]): string {
  const rec = c as unknown as Record<string, unknown>;
  return Object.entries(CONFIG_FLAGS).filter(([name]) => !only || only.includes(name)).map(([name, f]) => {
    const d = rec[f.key];
    const shown = d === undefined
      ? (name === "method" ? "mrm" : "mrm-p's")
      : Array.isArray(d)
      ? d.join(",")
      : String(d);
    return `  --${name.padEnd(20)} ${f.help} (default ${shown})`;
  }).join("\n");
}

/** Runs a task's main, printing known errors plainly and exiting non-zero. */
export async function main(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    if (e instanceof ConfigError || e instanceof FormatError) {
      console.error(`error: ${e.message}`);
      Deno.exit(2);
    }
    // file-system failures (a full disk, a read-only place, permissions): Deno's message names the
    // operation and the path; writes are atomic, so nothing was left half-written
    if (e instanceof Error && Object.values(Deno.errors).some((cls) => e instanceof cls)) {
      console.error(`error: ${e.message}`);
      Deno.exit(2);
    }
    throw e;
  }
}

/**
 * `base`, or `base-2`, `base-3`, ...: the first name not taken, claimed by creating it
 * (mkdir fails when another process got there first), so two runs started in the same
 * second get different folders.
 */
export async function uniqueFolder(base: string): Promise<string> {
  await Deno.mkdir(base.slice(0, base.lastIndexOf("/")) || ".", { recursive: true });
  for (let i = 1;; i++) {
    const name = i === 1 ? base : `${base}-${i}`;
    try {
      await Deno.mkdir(name);
      return name;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
  }
}

/** `<dir>/<timestamp>_<tag>` with a sortable UTC timestamp. */
export function timestamped(dir: string, tag: string): string {
  const ts = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-");
  return `${dir}/${ts}_${tag}`;
}

/** The options openComparisonStore reads (plus --out), shared by compare and sweep. */
export const COMPARISON_OPTIONS: Record<string, FlagOption> = {
  data: { type: "string" },
  embed_pt: { type: "string" },
  meta_json: { type: "string" },
  preset: { type: "string" },
  out: { type: "string" },
  backend: { type: "string" },
};

/**
 * For compare/sweep: the store from --data (default the synthetic demo store), the
 * backend, the truth file, and the settings: --preset, else synthetic for stores with
 * a .truth.json, else prism/reddit by the store's split field; config flags applied.
 */
export async function openComparisonStore(
  v: Record<string, string | boolean | string[] | undefined>,
  defaults: Partial<TrainConfig> = {},
): Promise<
  {
    store: EmbeddingStore;
    truth?: SynthTruth;
    name: string;
    config: TrainConfig;
    backend: string;
    explicit: string[];
    /** `--backend auto`: meta-trained runs take the backend the measured rule picks (lib/backend.ts) */
    auto: boolean;
  }
> {
  const prefix = resolvePrefix(v as Record<string, string>, "data/emb/synthetic/prism");
  await requireStore(prefix, "synthetic");
  const auto = (v.backend ?? "auto") === "auto";
  const backend = await initBackend((v.backend ?? "auto") as BackendName | "auto");
  const store = await loadStore(prefix);
  const truth = await readTruth(prefix, { meta: store.meta });
  const name = typeof v.preset === "string" ? v.preset : truth ? "synthetic" : detectSplitStyle(store.meta);
  const config = { ...preset(name), ...defaults, splitStyle: detectSplitStyle(store.meta) };
  const explicit = applyConfigFlags(config, v);
  config.data = prefix;
  const c = config.method === "mrm-p" ? personalConfig(config, explicit) : config;
  return {
    store,
    truth,
    name,
    config: validateConfig(c),
    backend: auto ? `auto (${backend} first)` : backend,
    explicit,
    auto,
  };
}
