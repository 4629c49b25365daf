/**
 * Evaluation on the GPU (webgpu backend, store resident there): every user's pair
 * features are computed from the store (projectPairsGpu: one upload of the users' ranges
 * and pair rows; where the store has more chunks or the first layer is wider than it
 * takes, the whole store is projected and gathered with tfjs ops instead) and mapped to
 * K-space, and one kernel adapts all users at once and counts the pairs each ranks right
 * (lib/train/kspace_gpu.ts). One readback: two counts per user.
 *
 * Against the host evaluation (evaluateProjected): the head and the K-space adaptation
 * run in float32 instead of float64, so a pair whose margin is within float32 rounding
 * of zero can fall the other way; tests/eval/gpu_eval_test.ts bounds how often.
 */
import * as tf from "@tensorflow/tfjs-core";
import { headMatrix } from "../model/head.ts";
import { isPersonal, type MrmParams, numBases } from "../model/params.ts";
import { firstLayerTensor, type ResidentStore, spillRows, uploadInt32 } from "../model/project.ts";
import { pairsGpuFits, projectPairsGpu, warnUnverified } from "../model/pairs_gpu.ts";
import type { UserTask } from "../data/tasks.ts";
import { kspaceEvalGpu, kspaceGpuReady } from "../train/kspace_gpu.ts";

/**
 * Adapts every user of `tasks` on its train pairs `trains[u]` (positions) with the store
 * on the GPU, and returns, per user, [test pairs ranked right, validation pairs ranked
 * right] (NaN where mrm-p's fit failed). See the module doc. Where the GPU keeps only part
 * of the store, the users go in groups, each with the rows it lacks uploaded (at most a
 * chunk's worth, spillRows, from `embeddings`): one readback per group.
 */
export async function rightCountsOnGpu(
  params: MrmParams,
  store: ResidentStore,
  tasks: UserTask[],
  trains: number[][],
  opts: { innerLr: number; innerSteps: number },
  embeddings?: Float32Array,
): Promise<Float32Array> {
  await kspaceGpuReady();
  await warnUnverified(store);
  if (store.kept === store.total) return await countsOnGpu(params, store, tasks, trains, opts, (r) => r);
  if (!embeddings) throw new Error("rightCountsOnGpu: a store kept in part on the GPU needs its embeddings");
  const right = new Float32Array(2 * tasks.length);
  for (let from = 0; from < tasks.length;) {
    const off = new Set<number>();
    let to = from;
    for (; to < tasks.length; to++) {
      const t = tasks[to], mine: number[] = [];
      for (const positions of [trains[to], t.test, t.val]) {
        for (const pos of positions) {
          for (const r of [t.chosen[pos], t.rejected[pos]]) if (r >= store.kept && !off.has(r)) mine.push(r);
        }
      }
      if (to > from && off.size + new Set(mine).size > store.rowsPerChunk) break;
      mine.forEach((r) => off.add(r));
    }
    const spill = spillRows(store, embeddings, off);
    try {
      right.set(
        await countsOnGpu(params, spill.view, tasks.slice(from, to), trains.slice(from, to), opts, spill.at),
        2 * from,
      );
    } finally {
      spill.dispose();
    }
    from = to;
  }
  return right;
}

/** rightCountsOnGpu for users whose rows are all in `store`, at `at(row)`. */
async function countsOnGpu(
  params: MrmParams,
  store: ResidentStore,
  tasks: UserTask[],
  trains: number[][],
  { innerLr, innerSteps }: { innerLr: number; innerSteps: number },
  at: (row: number) => number,
): Promise<Float32Array> {
  const h1 = params.layers[0].out, K = numBases(params), U = tasks.length;
  // every user's train, test and validation pairs, as store rows
  let P = 0;
  tasks.forEach((t, u) => P += trains[u].length + t.test.length + t.val.length);
  const chosen = new Int32Array(P), rejected = new Int32Array(P), meta = new Int32Array(6 * U);
  let p = 0;
  tasks.forEach((t, u) => {
    [trains[u], t.test, t.val].forEach((positions, part) => {
      meta[6 * u + 2 * part] = p;
      meta[6 * u + 2 * part + 1] = positions.length;
      for (const pos of positions) {
        chosen[p] = at(t.chosen[pos]);
        rejected[p] = at(t.rejected[pos]);
        p++;
      }
    });
  });
  const personal = isPersonal(params);
  const small = new Float32Array(2 * K);
  small.set(params.sharedWeight);
  if (personal) small.set(params.priorLogPrecision!, K);
  const kspace = (z: tf.Tensor, meta: tf.Tensor) =>
    kspaceEvalGpu(z, meta, tf.tensor1d(small), {
      k: K,
      users: U,
      personal,
      innerLr,
      innerSteps,
      thetaOffset: 0,
      rhoOffset: K,
    });
  // z = yd B^T with the head B (K x h1); yd itself when there is no head
  const toZ = (yd: tf.Tensor2D) =>
    params.layers.length > 1
      ? tf.matMul(yd, tf.tensor2d(Float32Array.from(headMatrix(params)), [K, h1]), false, true)
      : yd;
  let counts: tf.Tensor;
  if (pairsGpuFits(store, h1)) {
    // one upload: the users' ranges, then every pair's chosen and rejected rows; the pair
    // features straight from the store (projectPairsGpu)
    const packed = new Int32Array(6 * U + 2 * P);
    packed.set(meta);
    packed.set(chosen, 6 * U);
    packed.set(rejected, 6 * U + P);
    const up = uploadInt32(packed);
    try {
      counts = tf.tidy(() => {
        const yd = projectPairsGpu(store, up, 6 * U, P, tf.tensor1d(params.layers[0].weight), 0, h1);
        return tf.slice(kspace(toZ(yd), up), [0], [2 * U]);
      });
    } finally {
      up.dispose();
    }
  } else {
    const w1 = firstLayerTensor(params.layers[0]);
    try {
      counts = tf.tidy(() => {
        const y = store.chunks.length === 1
          ? tf.matMul(store.chunks[0], w1)
          : tf.concat2d(store.chunks.map((c) => tf.matMul(c, w1)), 0);
        const yd = tf.sub(tf.gather(y, tf.tensor1d(chosen, "int32")), tf.gather(y, tf.tensor1d(rejected, "int32")));
        return tf.slice(kspace(toZ(yd as tf.Tensor2D), tf.tensor1d(meta, "int32")), [0], [2 * U]);
      });
    } finally {
      w1.dispose();
    }
  }
  const right = await counts.data() as Float32Array;
  counts.dispose();
  return right;
}
