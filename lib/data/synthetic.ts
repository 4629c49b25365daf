/**
 * Synthetic users with known ground truth. Each response embedding is
 * x = mu + scale * n (n standard normal in H dims); latent reward directions
 * d_0..d_{L-1} (unit, random) read c_l(x) = d_l . (x - mu) / scale ~ N(0, 1).
 * A user's true reward is beta * sum_l u_l c_l(x): d_0 is a "quality" everyone
 * shares; typical users mix the taste directions (all but d_0 and d_3; two when
 * L = 4) on a simplex; hard users are contrarian (tastes negated) or long-tail
 * (d_3, a direction no typical user has).
 * Pairs are labelled by a Bradley–Terry (Luce) draw, so the per-pair oracle
 * probability sigma(r(chosen) - r(rejected)) is known.
 */
import type { StoreMeta } from "../store/store.ts";
import { writeStore } from "../store/store.ts";
import { writeFileAtomic } from "../fsutil.ts";
import { PyRandom } from "./rng.ts";
import { rowCount } from "../util/rows.ts";

/** Generator settings. */
export interface SynthOptions {
  /** "prism": many users, a few conversations each; "reddit": few users, many pairs, `split` field */
  preset: "prism" | "reddit";
  /** number of users */
  users: number;
  /** embedding width H */
  dim: number;
  /** generator seed */
  seed: number;
  /** share of hard users (half contrarian, half long-tail) @default 0.2 */
  hardShare?: number;
  /** latent reward directions L (>= 4: quality, 2 tastes, long-tail, extra tastes) @default 4 */
  latent?: number;
  /** reward sharpness beta @default 1.5 */
  beta?: number;
  /** per-coordinate embedding scale @default 5 */
  scale?: number;
  /** PRISM-like: conversations per user [min, max] @default [6, 30] */
  conversations?: [number, number];
  /** PRISM-like: max rejected replies per conversation @default 3 */
  maxPairs?: number;
  /** Reddit-like: [train, val] pairs per user @default [200, 60] */
  redditPairs?: [number, number];
}

/** The truth written beside the store as `<prefix>.truth.json`. */
export interface SynthTruth {
  /** the options the store was generated with */
  options: SynthOptions;
  /** each user's kind and true reward weights */
  users: Record<string, { kind: "typical" | "contrarian" | "long_tail"; weights: number[] }>;
  /** per user, per entry: P(chosen preferred) under the user's true reward */
  oracle: Record<string, number[]>;
  /**
   * the latent reward directions d_l (L unit vectors of H values) and the embedding scale:
   * c_l(x) = d_l . (x - mu) / scale; `subspace` fits users on these. Absent in truth files
   * written before they were recorded.
   */
  directions?: number[][];
  /** the embedding scale of `directions` */
  scale?: number;
}

/** Fast uniform PRNG (mulberry32) for bulk embedding values. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function fillNormal(out: Float32Array, rand: () => number, mean: Float32Array | null, scale: number): void {
  const n = out.length;
  for (let i = 0; i < n; i += 2) {
    let u = rand();
    while (u === 0) u = rand();
    const r = Math.sqrt(-2 * Math.log(u)) * scale, t = 2 * Math.PI * rand();
    out[i] = r * Math.cos(t) + (mean ? mean[i] : 0);
    if (i + 1 < n) out[i + 1] = r * Math.sin(t) + (mean ? mean[i + 1] : 0);
  }
}

/** Generates a store in memory: embeddings, metadata and truth. */
export function generateSynthetic(
  opts: SynthOptions,
): { embeddings: Float32Array; meta: StoreMeta; truth: SynthTruth } {
  const {
    preset,
    users,
    dim,
    seed,
    hardShare = 0.2,
    latent = 4,
    beta = 1.5,
    scale = 5,
    conversations = [6, 30],
    maxPairs = 3,
    redditPairs = [200, 60],
  } = opts;
  if (latent < 4) throw new RangeError("synthetic: latent must be >= 4");
  if (dim < latent) throw new RangeError(`synthetic: dim ${dim} must be >= latent ${latent}`);
  const rng = new PyRandom(seed);
  const fast = mulberry32(seed * 2654435761);
  // directions and mean
  const dirs: Float32Array[] = [];
  for (let l = 0; l < latent; l++) {
    const d = new Float32Array(dim);
    fillNormal(d, fast, null, 1);
    let nrm = 0;
    for (const v of d) nrm += v * v;
    nrm = Math.sqrt(nrm);
    for (let i = 0; i < dim; i++) d[i] /= nrm;
    dirs.push(d);
  }
  const mu = new Float32Array(dim);
  fillNormal(mu, fast, null, scale);

  // users' weights
  const truthUsers: SynthTruth["users"] = {};
  const ids: string[] = [];
  const width = String(users - 1).length;
  for (let u = 0; u < users; u++) {
    const id = `user_${String(u).padStart(width, "0")}`;
    ids.push(id);
    const w = new Array(latent).fill(0);
    w[0] = 0.5 + 0.5 * rng.random();
    const r = rng.random();
    let kind: "typical" | "contrarian" | "long_tail" = "typical";
    if (r < hardShare / 2) kind = "contrarian";
    else if (r < hardShare) kind = "long_tail";
    if (kind === "long_tail") {
      w[3] = rng.random() < 0.5 ? 1.5 : -1.5;
    } else {
      // tastes: a flat-Dirichlet mix over every direction but quality (0) and long-tail (3)
      const tastes = [...Array(latent).keys()].filter((l) => l !== 0 && l !== 3);
      const g = tastes.map(() => -Math.log(1 - rng.random()));
      const sum = g.reduce((a, b) => a + b, 0);
      const sign = kind === "contrarian" ? -1 : 1;
      tastes.forEach((l, i) => (w[l] = sign * 1.5 * g[i] / sum));
    }
    truthUsers[id] = { kind, weights: w };
  }

  // structure first, so the embedding matrix is allocated once
  type Conv = { id: string; replies: number; split?: "train" | "val" };
  const plan: Conv[][] = ids.map((_, u) => {
    const convs: Conv[] = [];
    if (preset === "prism") {
      const n = conversations[0] + rng.randbelow(conversations[1] - conversations[0] + 1);
      for (let c = 0; c < n; c++) convs.push({ id: `u${u}_c${c}`, replies: 2 + rng.randbelow(maxPairs) });
    } else {
      for (let c = 0; c < redditPairs[0]; c++) convs.push({ id: `u${u}_p${c}`, replies: 2, split: "train" });
      for (let c = 0; c < redditPairs[1]; c++) convs.push({ id: `u${u}_v${c}`, replies: 2, split: "val" });
    }
    return convs;
  });
  const nRows = plan.reduce((s, convs) => s + convs.reduce((a, c) => a + c.replies, 0), 0);
  const embeddings = new Float32Array(nRows * dim);
  fillNormal(embeddings, fast, null, scale);
  const meta: StoreMeta = {};
  const oracle: SynthTruth["oracle"] = {};
  let row = 0;
  const latentOf = (r: number): number[] => {
    const x = embeddings.subarray(r * dim, (r + 1) * dim);
    return dirs.map((d) => {
      let s = 0;
      for (let i = 0; i < dim; i++) s += d[i] * x[i];
      return s / scale;
    });
  };
  ids.forEach((id, u) => {
    const w = truthUsers[id].weights;
    const entries: StoreMeta[string] = [];
    const probs: number[] = [];
    for (const conv of plan[u]) {
      const rows = Array.from({ length: conv.replies }, (_, i) => row + i);
      row += conv.replies;
      const rewards = rows.map((r) => beta * latentOf(r).reduce((s, c, l) => s + c * w[l], 0));
      // Luce choice of the chosen reply
      const mx = Math.max(...rewards);
      const ex = rewards.map((v) => Math.exp(v - mx));
      let pick = rng.random() * ex.reduce((a, b) => a + b, 0), ci = 0;
      while (ci < ex.length - 1 && pick >= ex[ci]) pick -= ex[ci++];
      rows.forEach((r, i) => {
        if (i === ci) return;
        entries.push({
          conversation_id: conv.id,
          prompt: `synthetic prompt ${conv.id}`,
          chosen: `reply ${rows[ci]}`,
          rejected: `reply ${r}`,
          chosen_score: null,
          rejected_score: null,
          chosen_idx: rows[ci],
          rejected_idx: r,
          ...(conv.split ? { split: conv.split } : {}),
        });
        probs.push(1 / (1 + Math.exp(-(rewards[ci] - rewards[i]))));
      });
    }
    // Add the mean after labels are drawn (it cancels in every difference).
    meta[id] = entries;
    oracle[id] = probs;
  });
  for (let r = 0; r < nRows; r++) {
    const o = r * dim;
    for (let i = 0; i < dim; i++) embeddings[o + i] += mu[i];
  }
  return {
    embeddings,
    meta,
    truth: { options: opts, users: truthUsers, oracle, directions: dirs.map((d) => Array.from(d)), scale },
  };
}

/** Generates and writes `<prefix>.safetensors`, `<prefix>.json`, `<prefix>.truth.json`. */
export async function writeSynthetic(
  prefix: string,
  opts: SynthOptions,
): Promise<{ rows: number; pairs: number; truth: SynthTruth }> {
  const { embeddings, meta, truth } = generateSynthetic(opts);
  await writeStore(prefix, embeddings, opts.dim, meta, {
    info: { encoder: "synthetic", generator: JSON.stringify(opts) },
  });
  await writeFileAtomic(`${prefix}.truth.json`, JSON.stringify(truth));
  const pairs = Object.values(meta).reduce((s, l) => s + l.length, 0);
  return { rows: rowCount(embeddings, opts.dim), pairs, truth };
}

/** The presets the `synth` task offers. */
export const SYNTH_PRESETS: Record<string, Omit<SynthOptions, "seed">> = {
  prism: { preset: "prism", users: 400, dim: 256 },
  reddit: { preset: "reddit", users: 40, dim: 256 },
  /** many users with few pairs: 3-5 conversations of 1-2 pairs */
  "few-pairs": { preset: "prism", users: 1000, dim: 256, conversations: [3, 5], maxPairs: 2 },
  /** a heavy tail of hard users: half contrarian or long-tail */
  "hard-tail": { preset: "prism", users: 400, dim: 256, hardShare: 0.5 },
  /** more latent reward directions than K=2: tastes mix six directions */
  "many-directions": { preset: "prism", users: 400, dim: 256, latent: 8 },
};
