/**
 * Evaluation on the GPU (webgpu backend, store resident there): the whole store is
 * projected through the first layer, every user's pair features are gathered and mapped
 * to K-space, and one kernel adapts all users at once and counts the pairs each ranks
 * right (lib/train/kspace_gpu.ts). One readback: two counts per user.
 *
 * Against the host evaluation (evaluateProjected): the head and the K-space adaptation
 * run in float32 instead of float64, so a pair whose margin is within float32 rounding
 * of zero can fall the other way; tests/eval/gpu_eval_test.ts bounds how often.
 */
import * as tf from "@tensorflow/tfjs-core";
import { headMatrix } from "../model/head.ts";
import { isPersonal, type MrmParams, numBases } from "../model/params.ts";
import { firstLayerTensor, type ResidentStore } from "../model/project.ts";
import type { UserTask } from "../data/tasks.ts";
import { kspaceEvalGpu, kspaceGpuReady } from "../train/kspace_gpu.ts";

/**
 * Adapts every user of `tasks` on its train pairs `trains[u]` (positions) with the store
 * on the GPU, and returns, per user, [test pairs ranked right, validation pairs ranked
 * right] (NaN where mrm-p's fit failed). See the module doc.
 */
export async function rightCountsOnGpu(
  params: MrmParams,
  store: ResidentStore,
  tasks: UserTask[],
  trains: number[][],
  { innerLr, innerSteps }: { innerLr: number; innerSteps: number },
): Promise<Float32Array> {
  await kspaceGpuReady();
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
        chosen[p] = t.chosen[pos];
        rejected[p] = t.rejected[pos];
        p++;
      }
    });
  });
  const personal = isPersonal(params);
  const small = new Float32Array(2 * K);
  small.set(params.sharedWeight);
  if (personal) small.set(params.priorLogPrecision!, K);
  const w1 = firstLayerTensor(params.layers[0]);
  let counts: tf.Tensor;
  try {
    counts = tf.tidy(() => {
      const y = store.chunks.length === 1
        ? tf.matMul(store.chunks[0], w1)
        : tf.concat2d(store.chunks.map((c) => tf.matMul(c, w1)), 0);
      const yd = tf.sub(tf.gather(y, tf.tensor1d(chosen, "int32")), tf.gather(y, tf.tensor1d(rejected, "int32")));
      // z = yd B^T with the head B (K x h1); the identity when there is no head
      const z = params.layers.length > 1
        ? tf.matMul(yd, tf.tensor2d(Float32Array.from(headMatrix(params)), [K, h1]), false, true)
        : yd;
      const out = kspaceEvalGpu(z, tf.tensor1d(meta, "int32"), tf.tensor1d(small), {
        k: K,
        users: U,
        personal,
        innerLr,
        innerSteps,
        thetaOffset: 0,
        rhoOffset: K,
      });
      return tf.slice(out, [0], [2 * U]);
    });
  } finally {
    w1.dispose();
  }
  const right = await counts.data() as Float32Array;
  counts.dispose();
  return right;
}
