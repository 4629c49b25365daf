/** Release hyperparameters (docs/method.md §5) and the synthetic demo's, as typed data. */
import { ConfigError } from "./errors.ts";
import type { SplitStyle } from "./data/splits.ts";

/** Everything that defines a meta-training run. */
export interface TrainConfig {
  /** preset name the run started from */
  dataset: string;
  /** how users' pairs split into train/test */
  splitStyle: SplitStyle;
  /** store prefix (`<prefix>.safetensors` + `<prefix>.json`) */
  data: string;
  /** layer widths of the base functions (the last is K) */
  hiddenSizes: number[];
  /** biases in the base functions */
  useBias: boolean;
  /** inner Adam learning rate */
  innerLr: number;
  /** outer Adam learning rate */
  metaLr: number;
  /** inner Adam steps during meta-training */
  trainInnerEpochs: number;
  /** inner Adam steps when evaluating (and adapting a new user) */
  evalInnerEpochs: number;
  /** users per outer step */
  tasksPerBatch: number;
  /** meta-training epochs */
  epochs: number;
  /** share of steps of linear warm-up */
  warmupRatio: number;
  /** seed of splits and initialisation */
  seed: number;
  /** share of a user's train conversations used as query */
  valRatio: number;
  /** evaluate every N epochs */
  logFreq: number;
  /** checkpoint every N epochs */
  saveFreq: number;
  /** cap on seen users' train conversations/pairs (-1: none) */
  seenTrainLimit: number;
  /** cap on unseen users' train conversations/pairs (-1: none) */
  unseenTrainLimit: number;
  /** RPO rho: tau is the (1 - rho) quantile of the batch losses */
  rpoRho: number;
  /** RPO temperature (<= 0: hard mask) */
  rpoGamma: number;
  /** "rpo" (the method) or "mean" (plain MAML: mean of the query losses) */
  objective: "rpo" | "mean";
  /**
   * share of each seen user's train conversations held out as validation (0 = none);
   * used for honest model selection (sweeps), never the test pairs
   */
  valHoldout: number;
  /** first-order inner step (no second-order terms) */
  firstOrder: boolean;
  /** clip of the meta-gradient's global norm */
  clipNorm: number;
  /**
   * "mrm" (the release method, softmax weights adapted by inner Adam) or "mrm-p" (signed
   * weights adapted by an exact MAP fit under a meta-learned prior; docs/method.md §8).
   * Absent in configs saved before mrm-p existed, which are "mrm".
   */
  method?: "mrm" | "mrm-p";
  /** mrm-p: multiplier of the empirical-Bayes prior precisions the bases start from (1: as estimated) */
  ridge?: number;
  /** mrm-p: nuclear-norm strength of the low-rank start, as a multiple of the noise level */
  shrink?: number;
  /**
   * mrm-p: the low-rank start also fits the unseen users' train (support) pairs, never
   * their test pairs. A different protocol from the release's, where unseen users are
   * new to the shared model: results with it are not comparable (docs/method.md §8).
   */
  transductive?: boolean;
}

/**
 * mrm-p's own defaults, applied wherever a flag does not name a value. Chosen by
 * validation (`--val_holdout 0.2`, never test pairs) on the toolkit's synthetic presets;
 * `deno task sweep --method mrm-p` re-derives them (README, "Personalisation").
 */
export const MRM_P_DEFAULTS = {
  hiddenSizes: [4],
  ridge: 1,
  shrink: 0.5,
  metaLr: 1e-3,
  epochs: 5,
  tasksPerBatch: 4,
  valRatio: 0.5,
  objective: "mean" as const,
};

/** The release flag names of MRM_P_DEFAULTS' fields. */
const MRM_P_FLAGS: Record<keyof typeof MRM_P_DEFAULTS, string> = {
  hiddenSizes: "hidden_layers",
  ridge: "ridge",
  shrink: "shrink",
  metaLr: "meta_lr",
  epochs: "epochs",
  tasksPerBatch: "tasks_per_batch",
  valRatio: "val_ratio",
  objective: "objective",
};

/**
 * Turns a config into an mrm-p config: mrm-p's defaults for every field whose flag is
 * not in `explicit` (the flags the user named).
 */
export function personalConfig(c: TrainConfig, explicit: string[] = []): TrainConfig {
  const out: TrainConfig = { ...c, method: "mrm-p" };
  const rec = out as unknown as Record<string, unknown>;
  for (const [key, flag] of Object.entries(MRM_P_FLAGS)) {
    if (!explicit.includes(flag)) rec[key] = structuredClone((MRM_P_DEFAULTS as Record<string, unknown>)[key]);
  }
  return out;
}

const base = {
  hiddenSizes: [2],
  useBias: false,
  trainInnerEpochs: 1,
  evalInnerEpochs: 1,
  tasksPerBatch: 2,
  epochs: 200,
  warmupRatio: 0.05,
  seed: 42,
  valRatio: 0.9,
  rpoRho: 0.5,
  rpoGamma: 0.5,
  objective: "rpo" as const,
  valHoldout: 0,
  firstOrder: false,
  clipNorm: 1.0,
};

/** The presets by name. */
export const PRESETS: Record<string, TrainConfig> = {
  prism: {
    ...base,
    dataset: "prism",
    splitStyle: "prism",
    data: "data/emb/prism/V2",
    innerLr: 1e-3,
    metaLr: 1e-3,
    logFreq: 1,
    saveFreq: 5,
    seenTrainLimit: -1,
    unseenTrainLimit: -1,
  },
  reddit: {
    ...base,
    dataset: "reddit",
    splitStyle: "reddit",
    data: "data/emb/reddit/V2",
    innerLr: 5e-3,
    metaLr: 5e-3,
    logFreq: 10,
    saveFreq: 10,
    seenTrainLimit: 150,
    unseenTrainLimit: 50,
  },
  reddit100: {
    ...base,
    dataset: "reddit100",
    splitStyle: "reddit",
    data: "data/emb/reddit/V2",
    innerLr: 5e-3,
    metaLr: 5e-3,
    logFreq: 10,
    saveFreq: 10,
    seenTrainLimit: 100,
    unseenTrainLimit: 50,
  },
  /** The demo: a PRISM-like synthetic store, trained long enough to matter on 2 cores. */
  synthetic: {
    ...base,
    dataset: "synthetic",
    splitStyle: "prism",
    data: "data/emb/synthetic/prism",
    innerLr: 5e-2,
    metaLr: 1e-2,
    trainInnerEpochs: 5,
    evalInnerEpochs: 5,
    epochs: 30,
    logFreq: 5,
    saveFreq: 10,
    seenTrainLimit: -1,
    unseenTrainLimit: -1,
  },
};

/** Looks up a preset, with a clear error naming the choices. */
export function preset(name: string): TrainConfig {
  const p = PRESETS[name];
  if (!p) throw new ConfigError(`unknown preset '${name}' (expected one of: ${Object.keys(PRESETS).join(", ")})`);
  return structuredClone(p);
}

/** Largest base-function layer (the K-space head keeps h1 x h1 float64 matrices). */
export const MAX_LAYER = 1024;

/** Checks ranges; throws a ConfigError naming the flag. */
export function validateConfig(c: TrainConfig): TrainConfig {
  const pos = (v: number, flag: string) => {
    if (!(v > 0) || !Number.isFinite(v)) throw new ConfigError(`--${flag} must be a positive number, got ${v}`);
  };
  const int = (v: number, flag: string, min: number) => {
    if (!Number.isInteger(v) || v < min) throw new ConfigError(`--${flag} must be an integer >= ${min}, got ${v}`);
  };
  pos(c.innerLr, "inner_lr");
  pos(c.metaLr, "meta_lr");
  int(c.trainInnerEpochs, "train_inner_epochs", 0);
  int(c.evalInnerEpochs, "eval_inner_epochs", 0);
  int(c.tasksPerBatch, "tasks_per_batch", 1);
  int(c.epochs, "epochs", 1);
  int(c.logFreq, "log_freq", 1);
  int(c.saveFreq, "save_freq", 1);
  int(c.seed, "seed", 0);
  int(c.seenTrainLimit, "seen_train_limit", -1);
  int(c.unseenTrainLimit, "unseen_train_limit", -1);
  if (!(c.warmupRatio >= 0 && c.warmupRatio < 1)) {
    throw new ConfigError(`--warmup_ratio must be in [0, 1), got ${c.warmupRatio}`);
  }
  if (!(c.valRatio > 0 && c.valRatio < 1)) throw new ConfigError(`--val_ratio must be in (0, 1), got ${c.valRatio}`);
  if (!(c.rpoRho >= 0 && c.rpoRho <= 1)) throw new ConfigError(`--rpo_ratio must be in [0, 1], got ${c.rpoRho}`);
  if (c.objective !== "rpo" && c.objective !== "mean") {
    throw new ConfigError(`--objective must be rpo or mean, got ${c.objective}`);
  }
  if (!(c.valHoldout >= 0 && c.valHoldout < 1)) {
    throw new ConfigError(`--val_holdout must be in [0, 1), got ${c.valHoldout}`);
  }
  if (c.method !== undefined && c.method !== "mrm" && c.method !== "mrm-p") {
    throw new ConfigError(`--method must be mrm or mrm-p, got ${c.method}`);
  }
  if (c.transductive && c.method !== "mrm-p") {
    throw new ConfigError("--transductive applies to --method mrm-p only (its low-rank start)");
  }
  if (c.method === "mrm-p") {
    if (c.ridge === undefined || !(c.ridge > 0) || !Number.isFinite(c.ridge)) {
      throw new ConfigError(`--ridge must be a positive number, got ${c.ridge}`);
    }
    if (c.shrink !== undefined && !(c.shrink >= 0 && Number.isFinite(c.shrink))) {
      throw new ConfigError(`--shrink must be a number >= 0, got ${c.shrink}`);
    }
    if (c.hiddenSizes.length !== 1) {
      throw new ConfigError(
        `--hidden_layers: mrm-p uses one layer of K base functions (linear layers compose to one), got ${
          c.hiddenSizes.join(",")
        }`,
      );
    }
  }
  if (!Number.isFinite(c.rpoGamma)) throw new ConfigError(`--rpo_gamma must be a number, got ${c.rpoGamma}`);
  if (c.hiddenSizes.some((h) => h > MAX_LAYER)) {
    throw new ConfigError(
      `--hidden_layers: sizes above ${MAX_LAYER} are not supported, got ${c.hiddenSizes.join(",")}`,
    );
  }
  if (c.hiddenSizes.length === 0 || !c.hiddenSizes.every((h) => Number.isInteger(h) && h > 0)) {
    throw new ConfigError(
      `--hidden_layers must be a comma-separated list of positive integers, got ${c.hiddenSizes.join(",")}`,
    );
  }
  return c;
}

/** A short tag of the settings that differ most between runs, for folder names. */
export function shortConfig(c: TrainConfig): string {
  return `k${c.hiddenSizes.join("-")}_ilr${c.innerLr}_mlr${c.metaLr}_in${c.trainInnerEpochs}_e${c.epochs}_s${c.seed}${
    c.firstOrder ? "_fo" : ""
  }${c.objective === "mean" ? "_mean" : ""}${c.method === "mrm-p" ? `_p_r${c.ridge}` : ""}${
    c.transductive ? "_t" : ""
  }`;
}
