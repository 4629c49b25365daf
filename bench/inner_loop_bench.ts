/**
 * Inner-loop throughput: users adapted per second (K=2, H=4096, 15 support pairs,
 * 1 and 5 inner Adam steps). Each iteration adapts 200 users. Baseline: the
 * straightforward per-user port of the release's adapt_single_user (bench/_baseline.ts:
 * each user's tensors, tfjs ops for the BT gradient and the Adam step).
 */
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../lib/backend.ts";
import { adaptTheta } from "../lib/model/kspace.ts";
import { initParams } from "../lib/model/params.ts";
import { projectAll } from "../lib/model/project.ts";
import { headMatrix } from "../lib/model/head.ts";
import { pairFeatures } from "../lib/data/tasks.ts";
import { adaptPerUser } from "./_baseline.ts";

await initBackend("wasm");
const USERS = 200, PAIRS = 15, H = 4096;
const params = initParams(H, { hiddenSizes: [2], seed: 1 });
// rows: user u, pair p -> chosen row 2*(u*PAIRS+p), rejected row +1
const X = new Float32Array(USERS * PAIRS * 2 * H);
for (let i = 0; i < X.length; i++) X[i] = Math.sin(i * 0.7) * 3;

async function batched(steps: number): Promise<void> {
  const y = await projectAll(X, H, params.layers[0]);
  const head = headMatrix(params);
  for (let u = 0; u < USERS; u++) {
    const pos = [...Array(PAIRS).keys()];
    const base = u * PAIRS * 2;
    const { z } = pairFeatures(y, 2, head, 2, (p) => base + 2 * p, (p) => base + 2 * p + 1, pos);
    adaptTheta(params.sharedWeight, z, PAIRS, { lr: 1e-3, steps });
  }
}

const W = tf.tensor2d(params.layers[0].weight, [2, H]);
function perUser(steps: number): void {
  for (let u = 0; u < USERS; u++) {
    const ch = new Float32Array(PAIRS * H), rj = new Float32Array(PAIRS * H);
    for (let p = 0; p < PAIRS; p++) {
      const row = 2 * (u * PAIRS + p);
      ch.set(X.subarray(row * H, (row + 1) * H), p * H);
      rj.set(X.subarray((row + 1) * H, (row + 2) * H), p * H);
    }
    const c = tf.tensor2d(ch, [PAIRS, H]), r = tf.tensor2d(rj, [PAIRS, H]);
    const theta = adaptPerUser(W, params.sharedWeight, c, r, 1e-3, steps);
    theta.dataSync();
    tf.dispose([c, r, theta]);
  }
}

for (const steps of [1, 5]) {
  const group = `adapt ${USERS} users, ${steps} inner step${steps > 1 ? "s" : ""}`;
  Deno.bench({
    name: `mrm batched projection + K-space Adam, ${steps} step(s)`,
    group,
    n: 30,
    warmup: 5,
    fn: async () => await batched(steps),
  });
  Deno.bench({
    name: `per-user tfjs (release port), ${steps} step(s)`,
    group,
    baseline: true,
    n: 5,
    warmup: 1,
    fn: () => perUser(steps),
  });
}
