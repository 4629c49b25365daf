/**
 * One outer step of meta-training for a group of users, batched: their train rows
 * go to the backend as one block, one matMul projects them, the K-space math runs
 * per user, and one matMul returns the first layer's gradient for all of them.
 */
import { pairFeatures, type UserTask } from "../data/tasks.ts";
import { headGrads, headMatrix } from "../model/head.ts";
import { taskGrad } from "../model/kspace.ts";
import { INPUT_SCALE, isPersonal, type MrmParams, numBases, orderedArrays } from "../model/params.ts";
import { personalGrad } from "../model/personal.ts";
import { firstLayerTensor, residentStore, RowBlock, spillRows } from "../model/project.ts";
import { rpo } from "./rpo.ts";

/** A user's train rows, and each entry's position among them (-1 if not a train entry). */
export interface TaskRows {
  rows: Int32Array;
  localChosen: Int32Array;
  localRejected: Int32Array;
}

/** Collects the distinct embedding rows a user's train pairs read, sorted. */
export function taskRows(t: UserTask): TaskRows {
  const set = new Set<number>();
  for (const p of t.train) {
    set.add(t.chosen[p]);
    set.add(t.rejected[p]);
  }
  const rows = Int32Array.from([...set].sort((a, b) => a - b));
  const where = new Map<number, number>();
  rows.forEach((r, i) => where.set(r, i));
  const localChosen = new Int32Array(t.entries.length).fill(-1);
  const localRejected = new Int32Array(t.entries.length).fill(-1);
  for (const p of t.train) {
    localChosen[p] = where.get(t.chosen[p])!;
    localRejected[p] = where.get(t.rejected[p])!;
  }
  return { rows, localChosen, localRejected };
}

/** One user's part of a step. */
export interface StepTask {
  rows: TaskRows;
  support: number[];
  query: number[];
}

/** Settings of the inner loop and the objective. */
export interface StepOptions {
  innerLr: number;
  innerSteps: number;
  firstOrder: boolean;
  rpoRho: number;
  rpoGamma: number;
  /** @default "rpo" */
  objective?: "rpo" | "mean";
}

/** The step's objective, each user's query loss, and gradients aligned with namedArrays(). */
export interface StepResult {
  objective: number;
  losses: number[];
  grads: Float64Array[];
}

/** Copies the listed rows of `src` (H wide) into `dst`, merging contiguous runs. */
export function gatherRows(src: Float32Array, dim: number, rows: ArrayLike<number>, dst: Float32Array, at = 0): void {
  let i = 0;
  while (i < rows.length) {
    let j = i + 1;
    while (j < rows.length && rows[j] === rows[j - 1] + 1) j++;
    dst.set(src.subarray(rows[i] * dim, (rows[j - 1] + 1) * dim), (at + i) * dim);
    i = j;
  }
}

/** A scratch block big enough for any `perStep` of these users' rows together (H wide). */
export function stepScratch(rows: TaskRows[], perStep: number, dim: number): Float32Array {
  const sizes = rows.map((r) => r.rows.length).sort((a, b) => b - a);
  const maxRows = sizes.slice(0, perStep).reduce((a, b) => a + b, 0);
  return new Float32Array(Math.max(1, maxRows) * dim);
}

/**
 * Gathers several users' rows one after another into `scratch` (unless `copy` is false:
 * the rows are on the GPU already); returns where each user's rows start and how many rows
 * there are in all.
 */
export function gatherBatch(
  embeddings: Float32Array,
  dim: number,
  rows: TaskRows[],
  scratch: Float32Array,
  copy = true,
): { offsets: number[]; nRows: number } {
  const layout = batchLayout(rows);
  if (copy) rows.forEach((r, b) => gatherRows(embeddings, dim, r.rows, scratch, layout.offsets[b]));
  return layout;
}

/** Where each user's rows start when a batch's rows are laid out one user after another, and how many in all. */
export function batchLayout(rows: TaskRows[]): { offsets: number[]; nRows: number } {
  const offsets: number[] = [];
  let nRows = 0;
  for (const r of rows) {
    offsets.push(nRows);
    nRows += r.rows.length;
  }
  return { offsets, nRows };
}

/** The host part of a step: what the K-space math gives from the batch's projected rows. */
export interface KspaceStep {
  objective: number;
  losses: number[];
  /** h1 x nRows: the first layer's gradient is rowCoef X (X the batch's rows) */
  rowCoef: Float32Array;
  /** gradient of shared_weight */
  gTheta: Float64Array;
  /** gradient of prior_log_precision (mrm-p), else undefined */
  gRho?: Float64Array;
  /** gradients of the head layers (layers 1..) */
  gHead: Float64Array[];
}

/**
 * The K-space part of a step on the host, in float64: each user's inner loop (or MAP fit),
 * the objective, and everything of the meta-gradient except the first layer's product
 * with the rows. `y` holds the batch's rows projected by the first layer (nRows x h1).
 */
export function kspaceStep(
  params: MrmParams,
  y: Float32Array,
  batch: StepTask[],
  offsets: number[],
  nRows: number,
  opts: StepOptions,
): KspaceStep {
  const h1 = params.layers[0].out, K = numBases(params);
  const head = headMatrix(params);
  const per = batch.map((t, b) => {
    const c = (p: number) => offsets[b] + t.rows.localChosen[p];
    const r = (p: number) => offsets[b] + t.rows.localRejected[p];
    const s = pairFeatures(y, h1, head, K, c, r, t.support);
    const q = pairFeatures(y, h1, head, K, c, r, t.query);
    if (isPersonal(params)) {
      const pg = personalGrad(
        { w0: params.sharedWeight, rho: params.priorLogPrecision },
        s.z,
        t.support.length,
        q.z,
        t.query.length,
      );
      return { s, q, g: { loss: pg.loss, dTheta: pg.dW0, dZs: pg.dZs, dZq: pg.dZq }, dRho: pg.dRho, c, r };
    }
    const g = taskGrad(params.sharedWeight, s.z, t.support.length, q.z, t.query.length, {
      lr: opts.innerLr,
      steps: opts.innerSteps,
      firstOrder: opts.firstOrder,
    });
    return { s, q, g, dRho: undefined, c, r };
  });
  const losses = per.map((p) => p.g.loss);
  const { objective, coef } = opts.objective === "mean"
    ? {
      objective: losses.reduce((a, b) => a + b, 0) / losses.length,
      coef: new Float64Array(losses.length).fill(1 / losses.length),
    }
    : rpo(losses, opts.rpoRho, opts.rpoGamma);

  const gTheta = new Float64Array(K), gRho = new Float64Array(K);
  const gB = new Float64Array(K * h1);
  const rowCoef = new Float32Array(h1 * nRows); // h1 x nRows
  const ybar = new Float64Array(h1);
  per.forEach((u, b) => {
    const cb = coef[b];
    for (let k = 0; k < K; k++) gTheta[k] += cb * u.g.dTheta[k];
    if (u.dRho) { for (let k = 0; k < K; k++) gRho[k] += cb * u.dRho[k]; }
    const side = (feat: { yd: Float64Array }, dz: Float64Array, positions: number[]) => {
      positions.forEach((pos, i) => {
        ybar.fill(0);
        for (let k = 0; k < K; k++) {
          const gk = cb * dz[i * K + k];
          if (gk === 0) continue;
          for (let j = 0; j < h1; j++) {
            gB[k * h1 + j] += gk * feat.yd[i * h1 + j];
            ybar[j] += head[k * h1 + j] * gk;
          }
        }
        const rc = u.c(pos), rr = u.r(pos);
        for (let j = 0; j < h1; j++) {
          rowCoef[j * nRows + rc] += ybar[j] * INPUT_SCALE;
          rowCoef[j * nRows + rr] -= ybar[j] * INPUT_SCALE;
        }
      });
    };
    side(u.s, u.g.dZs, batch[b].support);
    side(u.q, u.g.dZq, batch[b].query);
  });
  return {
    objective,
    losses,
    rowCoef,
    gTheta,
    gRho: isPersonal(params) ? gRho : undefined,
    gHead: headGrads(params, gB),
  };
}

/** The row indices of a batch, one user's rows after another (the order gatherBatch lays them out). */
export function batchIndices(batch: StepTask[]): Int32Array {
  return Int32Array.from(batch.flatMap((t) => Array.from(t.rows.rows)));
}

/**
 * Computes the meta-gradient of one outer step. `scratch` must hold the
 * batch's rows (sum of rows x H floats); it is reused across steps.
 */
export async function metaStep(
  params: MrmParams,
  embeddings: Float32Array,
  batch: StepTask[],
  opts: StepOptions,
  scratch: Float32Array,
): Promise<StepResult> {
  const H = params.dim, h1 = params.layers[0].out;
  // on webgpu the store stays on the GPU and the step's rows are gathered there by index
  const store = await residentStore(embeddings, H);
  const { offsets, nRows } = gatherBatch(embeddings, H, batch.map((t) => t.rows), scratch, !store);
  // rows the store does not keep on the GPU go up with the step (spillRows)
  const indices = store ? batchIndices(batch) : undefined;
  const spill = store && spillRows(store, embeddings, indices!);
  const block = new RowBlock(
    scratch.subarray(0, nRows * H),
    nRows,
    H,
    spill && { store: spill.view, indices: indices!.map(spill.at) },
  );
  spill?.dispose();
  const w1 = firstLayerTensor(params.layers[0]);
  try {
    const y = await block.project(w1);
    const { objective, losses, rowCoef, gTheta, gRho, gHead } = kspaceStep(params, y, batch, offsets, nRows, opts);
    const gW1 = await block.weightGrad(rowCoef, h1);
    // biases cancel in chosen - rejected: their gradients stay zero (orderedArrays fills them)
    const grads = orderedArrays(params, {
      sharedWeight: gTheta,
      priorLogPrecision: gRho,
      layers: [gW1, ...gHead].map((weight) => ({ weight })),
    });
    return { objective, losses, grads };
  } finally {
    w1.dispose();
    block.dispose();
  }
}
