/** The outer meta-training loop (docs/method.md §3), one epoch at a time, resumable. */
import { PyRandom } from "../data/rng.ts";
import { supportQuery } from "../data/splits.ts";
import type { UserTask } from "../data/tasks.ts";
import { type MrmParams, namedArrays } from "../model/params.ts";
import type { TrainConfig } from "../presets.ts";
import { adamInit, type AdamState, adamUpdate, clipGlobalNorm } from "./adam.ts";
import { lrFactor, warmupSteps } from "./schedule.ts";
import { metaStep, stepScratch, type StepTask, type TaskRows, taskRows } from "./step.ts";
import { residentStore } from "../model/project.ts";
import { DeviceTraining } from "./device.ts";
import { kspaceGpuReady } from "./kspace_gpu.ts";
import { warnUnverified } from "../model/pairs_gpu.ts";

/** Everything needed to continue training exactly where it stopped. */
export interface TrainState {
  /** epochs completed */
  epoch: number;
  /** outer steps taken */
  step: number;
  params: MrmParams;
  adam: AdamState;
}

/** What one epoch did. */
export interface EpochStats {
  epoch: number;
  /** mean query loss over the epoch's users */
  metaLoss: number;
  /** mean RPO objective per step */
  objective: number;
  /** learning rate of the epoch's last step */
  lr: number;
  users: number;
  seconds: number;
}

/** A fresh state at epoch 0. */
export function initialState(params: MrmParams): TrainState {
  return { epoch: 0, step: 0, params, adam: adamInit(namedArrays(params).map(([, a]) => a.length)) };
}

/** Outer steps in a run: ceil(seen / tasksPerBatch) per epoch (leftover group included). */
export function totalSteps(nSeen: number, c: TrainConfig): number {
  return Math.ceil(nSeen / c.tasksPerBatch) * c.epochs;
}

/** The order in which an epoch visits the seen users (deterministic per seed and epoch). */
export function visitOrder(nSeen: number, seed: number, epoch: number): number[] {
  return new PyRandom(seed * 1_000_003 + 7919 * (epoch + 1)).shuffle([...Array(nSeen).keys()]);
}

/** Reusable per-run buffers: each seen user's rows and a scratch block for the step. */
export interface Trainer {
  seen: UserTask[];
  rows: TaskRows[];
  scratch: Float32Array;
}

/** Prepares the seen users for training (row lists, scratch sized for the largest step). */
export function makeTrainer(seen: UserTask[], dim: number, tasksPerBatch: number): Trainer {
  const rows = seen.map(taskRows);
  return { seen, rows, scratch: stepScratch(rows, tasksPerBatch, dim) };
}

/**
 * Runs the next epoch in place on `state`. `onStep` sees progress: users done and their
 * mean query loss so far (NaN while the steps run on the GPU, which reports the losses at
 * the epoch's end).
 */
export async function trainEpoch(
  state: TrainState,
  embeddings: Float32Array,
  tr: Trainer,
  c: TrainConfig,
  onStep?: (usersDone: number, loss: number) => void,
): Promise<EpochStats> {
  const t0 = performance.now();
  const epoch = state.epoch; // 0-based index of the epoch being run
  const total = totalSteps(tr.seen.length, c), warm = warmupSteps(total, c.warmupRatio);
  const order = visitOrder(tr.seen.length, c.seed, epoch);
  const arrays = namedArrays(state.params).map(([, a]) => a);
  let lossSum = 0, objSum = 0, steps = 0, lr = 0, done = 0, counted = 0;
  const opts = {
    innerLr: c.innerLr,
    innerSteps: c.trainInnerEpochs,
    firstOrder: c.firstOrder,
    rpoRho: c.rpoRho,
    rpoGamma: c.rpoGamma,
    objective: c.objective ?? "rpo",
  };
  // webgpu with the store resident: parameters and Adam stay on the GPU for the epoch
  const store = await residentStore(embeddings, state.params.dim);
  if (store) {
    await kspaceGpuReady();
    await warnUnverified(store);
  }
  const device = store ? new DeviceTraining(state, store, embeddings) : undefined;
  // the epoch's steps: users, support/query draws and step sizes
  const batches: StepTask[][] = [], lrs: number[] = [];
  for (let i = 0; i < order.length; i += c.tasksPerBatch) {
    batches.push(
      order.slice(i, i + c.tasksPerBatch).map((u) => {
        const t = tr.seen[u];
        const sq = supportQuery(t.entries, t.train, { seed: c.seed, userIndex: t.index, epoch, valRatio: c.valRatio });
        return { rows: tr.rows[u], ...sq };
      }),
    );
    lrs.push(c.metaLr * lrFactor(state.step + lrs.length, total, warm));
  }
  try {
    // on the GPU, where every step is fused: the whole epoch as one command buffer, or
    // else all steps' data up at once and the steps through tfjs
    const ran = (await device?.runEpoch(batches, lrs, c.clipNorm, opts)) ?? false;
    const planned = !ran && (device?.planEpoch(batches, lrs, c.clipNorm) ?? false);
    for (const [k, batch] of batches.entries()) {
      lr = lrs[k];
      let res: { objective: number; losses: number[] } | undefined;
      if (ran) {
        // done: the steps' objectives and losses come from finish()
      } else if (planned) device!.stepPlanned(k, opts);
      else if (device?.fusable(batch)) {
        // nothing comes back per step: the objective and losses arrive with finish()
        device.stepOnGpu(batch, opts, lr, c.clipNorm);
      } else if (device) {
        res = await device.step(batch, opts, lr, c.clipNorm);
      } else {
        const r = await metaStep(state.params, embeddings, batch, opts, tr.scratch);
        clipGlobalNorm(r.grads, c.clipNorm);
        adamUpdate(state.adam, arrays, r.grads, lr);
        res = r;
      }
      state.step++;
      steps++;
      done += batch.length;
      if (res) {
        objSum += res.objective;
        for (const l of res.losses) lossSum += l;
        counted += batch.length;
      }
      onStep?.(done, counted ? lossSum / counted : NaN);
    }
  } finally {
    // the GPU-only steps' objectives and losses (an error above leaves them unread)
    for (const r of (await device?.finish()) ?? []) {
      objSum += r.objective;
      for (const l of r.losses) lossSum += l;
    }
  }
  state.epoch++;
  return {
    epoch: state.epoch,
    metaLoss: lossSum / Math.max(1, done),
    objective: objSum / Math.max(1, steps),
    lr,
    users: done,
    seconds: (performance.now() - t0) / 1000,
  };
}
