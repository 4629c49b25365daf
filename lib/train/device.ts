/**
 * Meta-training with the parameters and the optimizer on the GPU (webgpu backend, store
 * resident there). A step of up to 64 users (stepOnGpu) reads nothing back: it uploads
 * its row indices, its users' pair ranges and its numbers, and the projection, the
 * K-space kernel (kspace_gpu.ts), the gradient products, the clip and Adam (one kernel)
 * all run on the GPU; its objective and losses wait there until the end of the epoch.
 * A larger step (step) reads its projected rows back once and does the K-space math on
 * the host. The host copy of the state is brought up to date once, at the end of the
 * epoch (finish, one readback).
 *
 * Against the host path (wasm/cpu): the same arithmetic, except that the K-space math
 * (in stepOnGpu), Adam's update and the clip run in float32 instead of float64; the
 * weights after several epochs agree to about 1e-6 relative (tests/train/device_test.ts).
 */
import * as tf from "@tensorflow/tfjs-core";
import { INPUT_SCALE, namedArrays, orderedArrays } from "../model/params.ts";
import { gatherResident, residentBuffers, type ResidentStore, spillRows, uploadInt32 } from "../model/project.ts";
import {
  firstLayerGradAdamGpu,
  firstLayerGradGpu,
  GRAD_ADAM_MAX_WORK,
  pairsGpuFits,
  projectPairsGpu,
} from "../model/pairs_gpu.ts";
import type { TrainState } from "./meta.ts";
import { batchIndices, batchLayout, kspaceStep, type StepOptions, type StepTask } from "./step.ts";
import {
  CLIP_ADAM_PACKED_MAX,
  clipAdamGpu,
  clipAdamPackedGpu,
  KSPACE_GPU_LIMITS,
  kspaceGpu,
  type KspaceGpuOptions,
} from "./kspace_gpu.ts";
import { epochGpuFits, type EpochSpill, runEpochGpu, STEP_NUMBERS, tfjsDevice } from "./epoch_gpu.ts";

const BETA1 = 0.9, BETA2 = 0.999, EPS = 1e-8;
/** The numbers at the head of a step's upload (see step()). */
const NUMBERS = STEP_NUMBERS;
/** tfjs-webgpu computes ops on host-side tensors below 1000 values on the host (WEBGPU_CPU_HANDOFF_SIZE_THRESHOLD). */
const CPU_FORWARD_MIN = 1000;

// the fused step's end: two kernels measured faster than one workgroup on an H200 (0.115 s
// against 0.148 s per PRISM-size epoch, bench/gpu_check.ts)
/**
 * A step's pairs as store rows, each user's support pairs then its query pairs (chosen
 * rows in idx[0, P), rejected in idx[P, 2P)), and per user [support start, support count,
 * query start, query count] in pairs.
 */
function stepLayout(batch: StepTask[]): { P: number; idx: Int32Array; meta: Int32Array } {
  let P = 0;
  for (const t of batch) P += t.support.length + t.query.length;
  const idx = new Int32Array(2 * P), meta = new Int32Array(4 * batch.length);
  let p = 0;
  batch.forEach((t, b) => {
    const put = (pos: number) => {
      idx[p] = t.rows.rows[t.rows.localChosen[pos]];
      idx[P + p] = t.rows.rows[t.rows.localRejected[pos]];
      p++;
    };
    meta[4 * b] = p;
    meta[4 * b + 1] = t.support.length;
    t.support.forEach(put);
    meta[4 * b + 2] = p;
    meta[4 * b + 3] = t.query.length;
    t.query.forEach(put);
  });
  return { P, idx, meta };
}

/** Steps' data one after the other (see DeviceTraining's #segment), and where each starts. */
function packSteps(segments: { packed: Int32Array; B: number; P: number }[]): {
  plan: Int32Array;
  steps: { at: number; B: number; P: number }[];
} {
  const plan = new Int32Array(segments.reduce((n, s) => n + s.packed.length, 0));
  let at = 0;
  const steps = segments.map((s) => {
    plan.set(s.packed, at);
    at += s.packed.length;
    return { at: at - s.packed.length, B: s.B, P: s.P };
  });
  return { plan, steps };
}

let fuseSteps = true, oneGroupEnd = false, planEpochs = true, epochKernel = true;
/** the kinds of epoch whose command buffer was checked against the tfjs step (see runEpoch) */
const checkedEpochs = new Set<string>();
/**
 * Those checks made in this process; each costs two readbacks and one runEpochGpu run
 * (tests count round trips with it).
 */
export const epochChecks = { count: 0 };

/**
 * Whether an epoch whose steps are all fused runs as one command buffer outside tfjs
 * (runEpoch, lib/train/epoch_gpu.ts); off, its steps go through tfjs one by one. For tests
 * and gpu_check, which compare them. Returns the previous setting.
 */
export function setEpochKernel(on: boolean): boolean {
  const was = epochKernel;
  epochKernel = on;
  return was;
}

/**
 * Whether one-layer models take the fused step (pair features and the first layer's
 * gradient read straight from the store, one upload, five kernels) where it fits; off,
 * every GPU step takes the general one (tfjs gathers and products). For tests and
 * gpu_check, which compare them; `oneGroup` makes the fused step end with one kernel of one
 * workgroup (gradient, clip and Adam) instead of two (the gradient over many workgroups,
 * then the clip and Adam); `plan` false uploads each step's data as the step runs instead
 * of the whole epoch's at once (planEpoch). Returns the previous setting of `on`.
 */
export function setFusedSteps(on: boolean, oneGroup = false, plan = true): boolean {
  const was = fuseSteps;
  fuseSteps = on;
  oneGroupEnd = oneGroup;
  planEpochs = plan;
  return was;
}

/**
 * The trainable arrays and their Adam moments on the GPU for the length of an epoch, each
 * kept as one flat buffer: the small arrays first (in namedArrays order), then the first
 * layer. The clip and Adam are then a fixed handful of kernels per step, however many
 * arrays the model has, and the small arrays are one contiguous slice to read back.
 */
export class DeviceTraining {
  readonly #state: TrainState;
  readonly #store: ResidentStore;
  /** the store's rows on the host: those the GPU does not keep go up with each step */
  readonly #embeddings: Float32Array;
  /**
   * parameters, then first and second moments, one after the other in one buffer, each
   * flat as [small arrays..., layers.0.weight]; the parameters come first, so their
   * offsets are offsets into this buffer
   */
  readonly #pmv: tf.Variable;
  /** values in each of the three parts of #pmv */
  readonly #n: number;
  /** position of layers.0.weight among namedArrays */
  readonly #w1: number;
  /** the other arrays' positions, in the order they sit at the head of the buffers */
  readonly #small: number[];
  /** values in the small arrays together (the first layer starts there) */
  readonly #smallLen: number;
  /** the input scale 0.01 as a GPU scalar (one upload per epoch, not per step) */
  readonly #inputScale: tf.Scalar;
  /** where each named array starts in the flat buffers */
  readonly #offset = new Map<string, number>();
  /** per fused step: [objective, each user's loss], kept on the GPU until finish() */
  readonly #stats: { out: tf.Tensor; at: number; users: number }[] = [];
  /** the epoch's step data, uploaded once by planEpoch, and where each step's starts */
  #plan?: { data: tf.Tensor; steps: { at: number; B: number; P: number }[] };
  /** what runEpoch computed (the host state is already up to date then) */
  #ranEpoch?: { objective: number; losses: number[] }[];

  /** Uploads the state's parameters and Adam moments. */
  constructor(state: TrainState, store: ResidentStore, embeddings: Float32Array) {
    this.#state = state;
    this.#store = store;
    this.#embeddings = embeddings;
    const named = namedArrays(state.params);
    this.#w1 = named.findIndex(([n]) => n === "layers.0.weight");
    this.#small = named.map((_, i) => i).filter((i) => i !== this.#w1);
    this.#smallLen = this.#small.reduce((n, i) => n + named[i][1].length, 0);
    let at = 0;
    for (const i of [...this.#small, this.#w1]) {
      this.#offset.set(named[i][0], at);
      at += named[i][1].length;
    }
    this.#inputScale = tf.scalar(INPUT_SCALE);
    const p = this.#flatten(named.map(([, a]) => a));
    this.#n = p.length;
    const all = new Float32Array(3 * this.#n);
    all.set(p);
    all.set(this.#flatten(state.adam.m), this.#n);
    all.set(this.#flatten(state.adam.v), 2 * this.#n);
    const t = tf.tensor1d(all);
    this.#pmv = tf.variable(t, false);
    t.dispose();
  }

  /** Arrays in namedArrays order, laid out as the buffers are. */
  #flatten(arrays: ArrayLike<number>[]): Float32Array {
    const out = new Float32Array(this.#smallLen + arrays[this.#w1].length);
    let at = 0;
    for (const i of [...this.#small, this.#w1]) {
      out.set(arrays[i], at);
      at += arrays[i].length;
    }
    return out;
  }

  /** Copies a buffer's values back into arrays in namedArrays order. */
  #unflatten(values: Float32Array, arrays: Float32Array[]): void {
    let at = 0;
    for (const i of [...this.#small, this.#w1]) {
      arrays[i].set(values.subarray(at, at + arrays[i].length));
      at += arrays[i].length;
    }
  }

  /** Whether a step with these settings runs wholly on the GPU (stepOnGpu), not through the host. */
  fusable(batch: StepTask[]): boolean {
    return batch.length <= KSPACE_GPU_LIMITS.users;
  }

  /**
   * One outer step with nothing read back: the step's pairs are gathered from the
   * resident store by row index, projected, mapped to K-space, and the K-space kernel
   * (lib/train/kspace_gpu.ts) gives the objective's gradient with respect to every pair
   * feature and the small arrays; the first layer's and the head's gradients are products
   * of those with the pairs, then the clip and Adam. The step uploads its row indices,
   * the users' pair ranges and the step's numbers; its objective and losses stay on the
   * GPU until finish().
   */
  stepOnGpu(batch: StepTask[], opts: StepOptions, lr: number, clipNorm: number): void {
    const params = this.#state.params, layers = params.layers, l0 = layers[0], h1 = l0.out, H = l0.in;
    const K = layers.at(-1)!.out, B = batch.length, S = this.#smallLen;
    const named = namedArrays(params);
    const at = (name: string) => this.#offset.get(name)!;
    const layout = stepLayout(batch), { P, idx, meta } = layout;
    // rows the GPU does not keep go up with the step; idx becomes positions in the view
    const spill = spillRows(this.#store, this.#embeddings, idx);
    idx.forEach((r, i) => idx[i] = spill.at(r));
    if (this.#fusable(spill.view)) {
      const segment = this.#segment(layout, B, lr, clipNorm);
      const up = uploadInt32(segment.packed);
      try {
        this.#fusedStep(spill.view, up, 0, B, segment.P, opts);
      } finally {
        up.dispose();
        spill.dispose();
      }
      return;
    }
    const packed = this.#numbers(lr, clipNorm, NUMBERS);
    const x = gatherResident(spill.view, idx);
    spill.dispose();
    try {
      tf.tidy(() => {
        const weight = (i: number) => {
          const l = layers[i];
          return tf.reshape(tf.slice(this.#pmv, [at(`layers.${i}.weight`)], [l.out * l.in]), [
            l.out,
            l.in,
          ]) as tf.Tensor2D;
        };
        const xd = tf.sub(tf.slice(x, [0, 0], [P, H]), tf.slice(x, [P, 0], [P, H])) as tf.Tensor2D;
        const w1 = tf.reshape(tf.slice(this.#pmv, [S], [h1 * H]), [h1, H]) as tf.Tensor2D;
        const yd = tf.mul(tf.matMul(xd, w1, false, true), this.#inputScale) as tf.Tensor2D;
        // the head B = W_n ... W_2 (K x h1); none with one layer
        let head: tf.Tensor2D | undefined;
        for (let i = 1; i < layers.length; i++) head = head ? tf.matMul(weight(i), head) : weight(i);
        const z = head ? tf.matMul(yd, head, false, true) : yd;
        const out = kspaceGpu(z, tf.tensor1d(meta, "int32"), this.#pmv, this.#kspaceOptions(B, P, opts));
        const dz = tf.reshape(tf.slice(out, [0], [P * K]), [P, K]) as tf.Tensor2D;
        // dL/dB = dz^T yd, dL/dyd = dz B, dL/dW1 = scale (dL/dyd)^T xd
        const ybar = head ? tf.matMul(dz, head) : dz;
        const gW1 = tf.mul(tf.matMul(ybar, xd, true, false), this.#inputScale);
        const gB = tf.matMul(dz, yd, true, false);
        // layer i of the head: (W_n...W_{i+1})^T gB (W_{i-1}...W_2)^T
        const headGrad = (i: number): tf.Tensor => {
          let left: tf.Tensor2D | undefined, right: tf.Tensor2D | undefined;
          for (let j = i + 1; j < layers.length; j++) left = left ? tf.matMul(weight(j), left) : weight(j);
          for (let j = 1; j < i; j++) right = right ? tf.matMul(weight(j), right) : weight(j);
          let g = left ? tf.matMul(left, gB, true, false) : gB;
          if (right) g = tf.matMul(g, right, false, true);
          return tf.reshape(g, [-1]);
        };
        const small = this.#small.map((i) => {
          const name = named[i][0];
          if (name === "shared_weight") return tf.slice(out, [P * K], [K]);
          if (name === "prior_log_precision") return tf.slice(out, [P * K + K], [K]);
          const m = /^layers\.(\d+)\.weight$/.exec(name);
          // biases cancel in chosen - rejected: their gradients are zero
          return m ? headGrad(Number(m[1])) : tf.zeros([named[i][1].length]);
        });
        this.#adam(tf.concat([...small, tf.reshape(gW1, [-1])]), tf.tensor1d(packed));
        this.#stats.push({ out: tf.keep(out), at: P * K + 2 * K, users: B });
      });
    } finally {
      x.dispose();
    }
  }

  /** Whether the fused step takes this model and store (or a step's view of it; see setFusedSteps). */
  #fusable(store = this.#store): boolean {
    const layers = this.#state.params.layers;
    return fuseSteps && layers.length === 1 && pairsGpuFits(store, layers[0].out) &&
      this.#n <= CLIP_ADAM_PACKED_MAX;
  }

  /** The K-space kernel's settings for a step of B users and P pairs (ranges at metaOffset). */
  #kspaceOptions(B: number, P: number, opts: StepOptions, metaOffset = 0): KspaceGpuOptions {
    const personal = this.#state.params.priorLogPrecision !== undefined;
    return {
      k: this.#state.params.layers.at(-1)!.out,
      users: B,
      pairs: P,
      personal,
      innerLr: opts.innerLr,
      innerSteps: opts.innerSteps,
      firstOrder: opts.firstOrder,
      objective: opts.objective ?? "rpo",
      rpoRho: opts.rpoRho,
      rpoGamma: opts.rpoGamma,
      thetaOffset: this.#offset.get("shared_weight")!,
      rhoOffset: personal ? this.#offset.get("prior_log_precision")! : 0,
      metaOffset,
    };
  }

  /**
   * One fused step's int32 data: the step's numbers (float32 bits; this counts the Adam
   * step), the users' pair ranges, the pairs' chosen then rejected store rows.
   */
  #segment(
    { P, idx, meta }: { P: number; idx: Int32Array; meta: Int32Array },
    B: number,
    lr: number,
    clip: number,
  ): { packed: Int32Array; B: number; P: number } {
    const packed = new Int32Array(NUMBERS + 4 * B + 2 * P);
    new Float32Array(packed.buffer, 0, NUMBERS).set(this.#numbers(lr, clip, NUMBERS).subarray(0, NUMBERS));
    packed.set(meta, NUMBERS);
    packed.set(idx, NUMBERS + 4 * B);
    return { packed, B, P };
  }

  /**
   * Uploads every step of an epoch at once (one upload for the epoch instead of one a
   * step), when all of them take the fused step: `batches[k]` runs with step size
   * `lrs[k]`. Counts the epoch's Adam steps. Afterwards stepPlanned(k) runs step k. Returns
   * false (and changes nothing) when some step cannot be fused, or when the GPU keeps only
   * part of the store (each step then uploads the rows it lacks with its data).
   */
  planEpoch(batches: StepTask[][], lrs: number[], clipNorm: number): boolean {
    if (!planEpochs || !this.#fusable() || !batches.every((b) => this.fusable(b))) return false;
    if (this.#store.kept < this.#store.total) return false;
    const { plan, steps } = packSteps(batches.map((b, k) => this.#segment(stepLayout(b), b.length, lrs[k], clipNorm)));
    this.#plan?.data.dispose();
    this.#plan = { data: uploadInt32(plan), steps };
    return true;
  }

  /**
   * Runs a whole epoch as one command buffer outside tfjs (lib/train/epoch_gpu.ts) when
   * every step takes the fused step and the whole store is on the GPU: `batches[k]` with
   * step size `lrs[k]`. Counts the epoch's Adam steps and brings the host state up to date
   * (one readback); finish() then only returns the steps' objectives and losses. Returns
   * false, changing nothing, where it does not apply, or where the GPU reported an error
   * (said once on stderr; later epochs then go through tfjs). The first epoch of each kind
   * in a process first runs its first step both ways, as one command buffer and through
   * the tfjs kernels, and goes on only if they agree (to 1e-5 relative): the kernels are the
   * same WGSL, but their bindings here are not tfjs's. Call it first, before any step.
   */
  async runEpoch(batches: StepTask[][], lrs: number[], clipNorm: number, opts: StepOptions): Promise<boolean> {
    if (!epochKernel || !planEpochs || oneGroupEnd || !this.#fusable() || !batches.every((b) => this.fusable(b))) {
      return false;
    }
    const chunks = residentBuffers(this.#store);
    if (!chunks || this.#stats.length > 0) return false;
    const params = this.#state.params, K = params.layers[0].out, device = tfjsDevice();
    const layouts = batches.map(stepLayout);
    // a store kept in part: the steps in segments whose rows off the GPU fit a spill buffer
    // of half a chunk (an out-of-memory refusal left one chunk's room); each step's rows
    // renumbered to address it as the chunk after the resident ones
    const step0Rows = layouts[0]?.idx.slice();
    const spill = this.#store.kept < this.#store.total ? this.#spillSegments(layouts) : undefined;
    if (spill === null) return false;
    // the K-space kernel's settings as the tfjs steps use them (users, pairs and ranges vary by step)
    const { users: _users, pairs: _pairs, metaOffset: _meta, ...kspace } = this.#kspaceOptions(0, 0, opts);
    const spec = {
      ...kspace,
      chunks,
      rowsPerChunk: this.#store.rowsPerChunk,
      dim: this.#store.dim,
      n: this.#n,
      small: this.#smallLen,
    };
    if (!epochGpuFits(device, spec, Math.max(0, ...layouts.map((l) => l.P)), spill !== undefined)) return false;
    const step0 = this.#state.adam.step;
    const { plan, steps } = packSteps(layouts.map((l, k) => this.#segment(l, batches[k].length, lrs[k], clipNorm)));
    const named = namedArrays(params);
    const pmv = new Float32Array(3 * this.#n);
    pmv.set(this.#flatten(named.map(([, a]) => a)));
    pmv.set(this.#flatten(this.#state.adam.m), this.#n);
    pmv.set(this.#flatten(this.#state.adam.v), 2 * this.#n);
    try {
      // once per process and kind of epoch: its first step both ways, against the tfjs step
      const bound = chunks.length + (spill ? 1 : 0);
      const key = `${bound}_${K}_${spec.personal}_${spec.innerSteps}_${spec.firstOrder}_${spec.objective}`;
      if (!checkedEpochs.has(key)) {
        const first = spill && { rows: spill.rows, starts: [0], data: [spill.data[0]] };
        const one = await runEpochGpu(device, spec, plan, steps.slice(0, 1), pmv, first);
        const up = uploadInt32(plan);
        // the tfjs step reads the first step's rows off the GPU from a view that numbers
        // them as the segment does (in order of first appearance)
        const view = spillRows(this.#store, this.#embeddings, step0Rows);
        let theirs: Float32Array;
        try {
          this.#fusedStep(view.view, up, steps[0].at, steps[0].B, steps[0].P, opts);
          theirs = await this.#pmv.data() as Float32Array;
        } finally {
          up.dispose();
          view.dispose();
          this.#stats.pop()?.out.dispose();
          tf.tidy(() => this.#pmv.assign(tf.tensor1d(pmv)));
        }
        let num = 0, den = 0;
        theirs.forEach((v, i) => {
          num += (one.pmv[i] - v) ** 2;
          den += v * v;
        });
        const rel = Math.sqrt(num / Math.max(den, 1e-30));
        if (!(rel < 1e-5)) throw new Error(`the epoch kernel's first step differs from tfjs's by ${rel} (relative)`);
        checkedEpochs.add(key);
        epochChecks.count++;
      }
      const r = await runEpochGpu(device, spec, plan, steps, pmv, spill);
      const n = this.#n;
      this.#unflatten(r.pmv.subarray(0, n), named.map(([, a]) => a));
      this.#unflatten(r.pmv.subarray(n, 2 * n), this.#state.adam.m);
      this.#unflatten(r.pmv.subarray(2 * n, 3 * n), this.#state.adam.v);
      this.#ranEpoch = r.stats;
      return true;
    } catch (e) {
      this.#state.adam.step = step0;
      epochKernel = false;
      console.error(`webgpu: ${(e as Error).message}; epochs run through tfjs step by step instead`);
      return false;
    }
  }

  /**
   * Splits an epoch's steps into segments whose rows off the GPU fit a spill buffer of half
   * a chunk, renumbers those rows in `layouts` (in place) to kept + their position in the
   * segment's spill, and gathers each segment's rows from the host. Null when one step alone
   * needs more.
   */
  #spillSegments(layouts: { idx: Int32Array }[]): EpochSpill | null {
    const { kept, dim: H } = this.#store, rows = Math.max(1, Math.floor(this.#store.rowsPerChunk / 2));
    const starts: number[] = [], data: Float32Array[] = [];
    let at = new Map<number, number>(), from = 0;
    const close = (to: number) => {
      const values = new Float32Array(at.size * H);
      for (const [r, j] of at) values.set(this.#embeddings.subarray(r * H, (r + 1) * H), (j - kept) * H);
      starts.push(from);
      data.push(values);
      for (let k = from; k < to; k++) {
        const idx = layouts[k].idx;
        idx.forEach((r, i) => idx[i] = r < kept ? r : at.get(r)!);
      }
      at = new Map();
      from = to;
    };
    for (let k = 0; k < layouts.length; k++) {
      const fresh = new Set<number>();
      for (const r of layouts[k].idx) if (r >= kept && !at.has(r)) fresh.add(r);
      if (fresh.size > rows) return null;
      if (at.size + fresh.size > rows) close(k);
      for (const r of layouts[k].idx) if (r >= kept && !at.has(r)) at.set(r, kept + at.size);
    }
    close(layouts.length);
    return { rows, starts, data };
  }

  /** Runs step k of the epoch planEpoch uploaded (the fused step, nothing uploaded or read back). */
  stepPlanned(k: number, opts: StepOptions): void {
    const { at, B, P } = this.#plan!.steps[k];
    this.#fusedStep(this.#store, this.#plan!.data, at, B, P, opts);
  }

  /**
   * The fused step for a one-layer model, from the step's int32 data at `at` in `up` (see
   * #segment): three kernels, the pair features from the store (projectPairsGpu), the
   * K-space kernel, and the flat gradient from the store then the clip and Adam
   * (firstLayerGradGpu, clipAdamPackedGpu; or both in one workgroup, firstLayerGradAdamGpu,
   * see setFusedSteps). The K-space kernel's output is kept whole until finish(), which
   * reads the step's objective and losses from it.
   */
  #fusedStep(store: ResidentStore, up: tf.Tensor, at: number, B: number, P: number, opts: StepOptions) {
    const params = this.#state.params, K = params.layers[0].out, S = this.#smallLen;
    const offset = (name: string) => this.#offset.get(name)!;
    const rowsAt = at + NUMBERS + 4 * B;
    const personal = params.priorLogPrecision !== undefined;
    tf.tidy(() => {
      const z = projectPairsGpu(store, up, rowsAt, P, this.#pmv, S, K);
      const out = kspaceGpu(z, up, this.#pmv, this.#kspaceOptions(B, P, opts, at + NUMBERS));
      const where = {
        small: S,
        width: K,
        thetaAt: offset("shared_weight"),
        rhoAt: personal ? offset("prior_log_precision") : -1,
      };
      if (oneGroupEnd && this.#n * P <= GRAD_ADAM_MAX_WORK) {
        this.#pmv.assign(firstLayerGradAdamGpu(store, up, rowsAt, P, out, this.#pmv, { ...where, numAt: at }));
      } else {
        const g = firstLayerGradGpu(store, up, rowsAt, P, out, where);
        this.#pmv.assign(clipAdamPackedGpu(this.#pmv, g, up, at));
      }
      this.#stats.push({ out: tf.keep(out), at: P * K + 2 * K, users: B });
    });
  }

  /**
   * Counts the Adam step and returns its numbers (step size, 1 / sqrt(bias correction 2),
   * clip, Adam's constants; the order clipAdamGpu reads) at the head of a block of at least
   * `length` values. The block is padded to CPU_FORWARD_MIN values so that tfjs slices it on
   * the GPU (the host path slices its gradients from it); a smaller one would be sliced on
   * the host and every slice uploaded on its own.
   */
  #numbers(lr: number, clipNorm: number, length: number): Float32Array {
    const t = ++this.#state.adam.step;
    const packed = new Float32Array(Math.max(CPU_FORWARD_MIN, length));
    packed.set([
      lr / (1 - BETA1 ** t),
      1 / Math.sqrt(1 - BETA2 ** t),
      clipNorm,
      BETA1,
      1 - BETA1,
      BETA2,
      1 - BETA2,
      EPS,
      1,
      1e-6,
    ]);
    return packed;
  }

  /** The global-norm clip and Adam on the flat gradient g0 (one kernel); `up` holds the step's numbers (see #numbers). */
  #adam(g0: tf.Tensor, up: tf.Tensor1D): void {
    this.#pmv.assign(clipAdamGpu(this.#pmv, g0, up));
  }

  /**
   * One outer step through the host, for settings the K-space kernel does not take
   * (fusable() false): project the batch's rows, read them back with the small parameters
   * (the step's only readback), run the K-space math on the host, then the first layer's
   * gradient, the clip and Adam on the GPU.
   */
  async step(batch: StepTask[], opts: StepOptions, lr: number, clipNorm: number): Promise<{
    objective: number;
    losses: number[];
  }> {
    const params = this.#state.params, l0 = params.layers[0], h1 = l0.out, S = this.#smallLen;
    const { offsets, nRows } = batchLayout(batch.map((t) => t.rows));
    const indices = batchIndices(batch);
    const spill = spillRows(this.#store, this.#embeddings, indices);
    const x = gatherResident(spill.view, indices.map(spill.at));
    spill.dispose();
    try {
      const both = tf.tidy(() => {
        const w1 = tf.reshape(tf.slice(this.#pmv, [S], [h1 * l0.in]), [h1, l0.in]);
        const y = tf.mul(tf.matMul(x, w1, false, true), this.#inputScale);
        return tf.concat([tf.reshape(y, [-1]), tf.slice(this.#pmv, [0], [S])]);
      });
      const values = await both.data() as Float32Array;
      both.dispose();
      // the host's copy of the small parameters is the GPU's, as of this step
      const named = namedArrays(params);
      let at = nRows * h1;
      for (const i of this.#small) {
        const a = named[i][1];
        a.set(values.subarray(at, at + a.length));
        at += a.length;
      }
      const k = kspaceStep(params, values.subarray(0, nRows * h1), batch, offsets, nRows, opts);
      const host = orderedArrays(params, {
        sharedWeight: k.gTheta,
        priorLogPrecision: k.gRho,
        layers: [new Float64Array(0), ...k.gHead].map((weight) => ({ weight })),
      });
      // one upload carries the step's numbers and the host gradients
      const packed = this.#numbers(lr, clipNorm, NUMBERS + S);
      let off = NUMBERS;
      for (const i of this.#small) {
        packed.set(host[i], off);
        off += host[i].length;
      }
      tf.tidy(() => {
        const up = tf.tensor1d(packed);
        const gW1 = tf.reshape(tf.matMul(tf.tensor2d(k.rowCoef, [h1, nRows]), x), [-1]);
        this.#adam(tf.concat([tf.slice(up, [NUMBERS], [S]), gW1]), up);
      });
      return { objective: k.objective, losses: k.losses };
    } finally {
      x.dispose();
    }
  }

  /**
   * Brings the host state up to date and returns what the GPU-only steps (stepOnGpu)
   * computed, in step order: one readback for all of it. Frees the GPU copies.
   */
  async finish(): Promise<{ objective: number; losses: number[] }[]> {
    if (this.#ranEpoch) {
      const stats = this.#ranEpoch;
      this.#ranEpoch = undefined;
      this.dispose();
      return stats;
    }
    // the K-space kernels' whole outputs: slicing out each step's objective and losses as
    // the step ran would cost a dispatch per step
    const all = tf.tidy(() => {
      // in groups: one concat of thousands of tensors would bind them all at once
      const parts = [this.#pmv, ...this.#stats.map((s) => s.out)];
      const groups: tf.Tensor[] = [];
      for (let i = 0; i < parts.length; i += 64) groups.push(tf.concat(parts.slice(i, i + 64)));
      return groups.length === 1 ? groups[0] : tf.concat(groups);
    });
    const values = await all.data() as Float32Array;
    all.dispose();
    const n = this.#n;
    this.#unflatten(values.subarray(0, n), namedArrays(this.#state.params).map(([, a]) => a));
    this.#unflatten(values.subarray(n, 2 * n), this.#state.adam.m);
    this.#unflatten(values.subarray(2 * n, 3 * n), this.#state.adam.v);
    let at = 3 * n;
    const stats = this.#stats.map((s) => {
      const v = values.subarray(at + s.at, at + s.at + 1 + s.users);
      at += s.out.size;
      return { objective: v[0], losses: Array.from(v.subarray(1)) };
    });
    this.dispose();
    return stats;
  }

  /** Frees the GPU copies without reading them back. */
  dispose(): void {
    [this.#pmv, this.#inputScale, ...this.#stats.map((s) => s.out)].forEach((t) => t.dispose());
    this.#plan?.data.dispose();
    this.#plan = undefined;
    this.#stats.length = 0;
  }
}
