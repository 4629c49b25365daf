/** Shared test helpers: temp dirs and small stores made on the fly. */
import { type EmbeddingStore, type StoreMeta, writeStore } from "../lib/store/store.ts";
import { generateSynthetic } from "../lib/data/synthetic.ts";
import type { UserTask } from "../lib/data/tasks.ts";
import { type StepTask, taskRows } from "../lib/train/step.ts";
import * as tf from "@tensorflow/tfjs-core";
import { residentRows } from "../lib/model/project.ts";
import { verifyPairsGpu } from "../lib/model/pairs_gpu.ts";
import { kspaceGpuReady } from "../lib/train/kspace_gpu.ts";

/** Runs `f`, counting the tensor readbacks (data()) made while it runs. */
export async function countReadbacks<T>(f: () => Promise<T>): Promise<{ value: T; readbacks: number }> {
  // deno-lint-ignore no-explicit-any
  const proto = tf.Tensor.prototype as any;
  const orig = proto.data;
  let readbacks = 0;
  proto.data = function (this: unknown, ...a: unknown[]) {
    readbacks++;
    return orig.apply(this, a);
  };
  try {
    return { value: await f(), readbacks };
  } finally {
    proto.data = orig;
  }
}

/**
 * The webgpu path's one-off checks, each reading back once (the kernels once per process,
 * the pair kernel once per store), made before readbacks are counted.
 */
export async function gpuOneOffChecks(embeddings: Float32Array, dim: number): Promise<void> {
  await kspaceGpuReady();
  const resident = residentRows(embeddings, dim)!;
  await resident.ready;
  await verifyPairsGpu(resident);
}

/** A fresh temporary directory, removed by the returned cleanup. */
export async function tempDir(): Promise<{ dir: string; [Symbol.asyncDispose](): Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "mrm-test-" });
  return { dir, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

/** An in-memory PRISM-like synthetic store (prefix "mem") of `users` users at width `dim`. */
export function memStore(users: number, dim: number, seed: number): EmbeddingStore {
  const g = generateSynthetic({ preset: "prism", users, dim, seed });
  return { prefix: "mem", embeddings: g.embeddings, n: g.embeddings.length / dim, dim, meta: g.meta, info: {} };
}

/** Deterministic pseudo-random floats in [-1, 1). */
export function randomArray(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    out[i] = a / 2147483648 - 1;
  }
  return out;
}

/** A tiny store: `users` users with `pairs` pairs over `convs` conversations each. */
export async function tinyStore(
  prefix: string,
  { users = 4, pairs = 6, convs = 3, dim = 8 } = {},
): Promise<{ embeddings: Float32Array; meta: StoreMeta }> {
  const meta: StoreMeta = {};
  let row = 0;
  for (let u = 0; u < users; u++) {
    meta[`u${u}`] = Array.from(
      { length: pairs },
      (_, p) => ({ conversation_id: `c${p % convs}`, chosen_idx: row + 2 * p, rejected_idx: row + 2 * p + 1 }),
    );
    row += 2 * pairs;
  }
  const embeddings = randomArray(row * dim, 7);
  await writeStore(prefix, embeddings, dim, meta);
  return { embeddings, meta };
}

/** Step tasks for users given as (chosen row, rejected row) support and query pairs. */
export function stepTasks(users: { support: number[][]; query: number[][] }[]): StepTask[] {
  return users.map((u, i) => {
    const pairs = [...u.support, ...u.query];
    const t: UserTask = {
      id: `u${i}`,
      group: "seen",
      index: i,
      entries: pairs.map(([c, r]) => ({ chosen_idx: c, rejected_idx: r })),
      train: pairs.map((_, j) => j),
      test: [],
      val: [],
      chosen: Int32Array.from(pairs, ([c]) => c),
      rejected: Int32Array.from(pairs, ([, r]) => r),
    };
    return {
      rows: taskRows(t),
      support: u.support.map((_, j) => j),
      query: u.query.map((_, j) => u.support.length + j),
    };
  });
}

/** Relative L2 error of `a` against the reference `b`. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let n = 0, d = 0;
  for (let i = 0; i < b.length; i++) {
    n += (a[i] - b[i]) ** 2;
    d += b[i] ** 2;
  }
  return Math.sqrt(n / Math.max(d, 1e-30));
}

const repoRoot = new URL("..", import.meta.url).pathname;

/** Runs `tasks/<file>` as a user would (a child Deno process); returns exit code and output. */
export async function runTask(
  file: string,
  args: string[],
  { env = {}, cwd = repoRoot }: { env?: Record<string, string>; cwd?: string } = {},
): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${repoRoot}tasks/${file}`, ...args],
    stdout: "piped",
    stderr: "piped",
    env,
    cwd,
  }).output();
  return { code: r.code, out: new TextDecoder().decode(r.stdout), err: new TextDecoder().decode(r.stderr) };
}

/** max |row - ref| / max |ref| over reference hidden states, and the score error relative to max(1, |score|). */
export function hiddenErrors(
  rows: Float32Array,
  scores: Float32Array,
  refs: { hidden: number[]; score: number }[],
  H: number,
): { hidden: number; score: number } {
  let hidden = 0, score = 0;
  refs.forEach((r, i) => {
    const scale = Math.max(...r.hidden.map(Math.abs));
    r.hidden.forEach((v, j) => (hidden = Math.max(hidden, Math.abs(rows[i * H + j] - v) / scale)));
    score = Math.max(score, Math.abs(scores[i] - r.score) / Math.max(1, Math.abs(r.score)));
  });
  return { hidden, score };
}
