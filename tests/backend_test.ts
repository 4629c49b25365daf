import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { autoRule, initBackend, type WorkPlan } from "../lib/backend.ts";
import { randomArray } from "./helpers.ts";

// the release's PRISM run on the real store (1000 users, H=4096: ~1.2 GiB), 200 epochs
const prism: WorkPlan = {
  epochs: 200,
  seenUsers: 800,
  evaluations: 200,
  users: 1000,
  storeBytes: 1.2 * 2 ** 30,
  oneLayer: true,
  usersPerStep: 2,
};

Deno.test("--backend auto: webgpu only on a hardware GPU, for fused steps, where the measured savings exceed the set-up", () => {
  assert.equal(autoRule(prism, true).backend, "webgpu");
  assert.match(autoRule(prism, true).reason, /save \d+\.\d s against \d\.\d s/);
  // no hardware adapter (llvmpipe counts as none)
  assert.deepEqual(autoRule(prism, false), { backend: "wasm", reason: "no hardware WebGPU adapter" });
  // the general GPU step (a head, or more users a step than the K-space kernel's workgroup) is slower than wasm
  assert.equal(autoRule({ ...prism, oneLayer: false }, true).backend, "wasm");
  assert.equal(autoRule({ ...prism, usersPerStep: 65 }, true).backend, "wasm");
  // one evaluation of a PRISM-size store: 0.25 s saved against ~3 s of set-up
  const test = { ...prism, epochs: 0, evaluations: 1 };
  assert.equal(autoRule(test, true).backend, "wasm");
  assert.match(autoRule(test, true).reason, /not worth it/);
  // the demo's scale: 20 seen users save nothing per epoch
  assert.equal(
    autoRule({ ...prism, seenUsers: 20, users: 40, epochs: 30, evaluations: 30, storeBytes: 2e6 }, true).backend,
    "wasm",
  );
  // a short run on a large store: the upload outweighs 3 epochs
  assert.equal(autoRule({ ...prism, epochs: 3, evaluations: 1, storeBytes: 12 * 2 ** 30 }, true).backend, "wasm");
  assert.equal(
    autoRule({ ...prism, epochs: 30, evaluations: 3, seenUsers: 8000, users: 10000, storeBytes: 12 * 2 ** 30 }, true)
      .backend,
    "webgpu",
  );
});

Deno.test("webgpu: a small product with a long inner dimension (tfjs's split-K shapes) equals the cpu backend's", async () => {
  // [P, H] x [K, H]^T: a 4-base model's pair features at H = 2048 and 4096; tfjs's split-K
  // program gave these wrong on llvmpipe (off by more than their size)
  const cases = [[200, 2048, 4], [50, 4096, 4], [64, 4096, 3]];
  for (const [P, H, K] of cases) {
    const x = randomArray(P * H, 1), w = randomArray(K * H, 2);
    const product = async () => {
      const y = tf.matMul(tf.tensor2d(x, [P, H]), tf.tensor2d(w, [K, H]), false, true);
      const v = await y.data();
      tf.dispose(y);
      return v;
    };
    await initBackend("cpu");
    const want = await product();
    await initBackend("webgpu");
    const got = await product();
    let worst = 0;
    want.forEach((v, i) => worst = Math.max(worst, Math.abs(v - got[i])));
    assert.ok(worst < 1e-3, `[${P}, ${H}] x [${K}, ${H}]^T: off by ${worst}`);
  }
  await initBackend("wasm");
});
