/**
 * One outer step against PyTorch: tests/fixtures/torch_outer_step.json was computed by
 * tests/fixtures/torch_reference.py (torch autograd through a differentiable inner
 * Adam, torch.quantile RPO, clip_grad_norm_, torch.optim.Adam; float64).
 */
import assert from "node:assert/strict";
import { initBackend } from "../../lib/backend.ts";
import type { MrmParams } from "../../lib/model/params.ts";
import { adamInit, adamUpdate, clipGlobalNorm } from "../../lib/train/adam.ts";
import { metaStep } from "../../lib/train/step.ts";
import { relErr, stepTasks } from "../helpers.ts";

const f = JSON.parse(await Deno.readTextFile(new URL("../fixtures/torch_outer_step.json", import.meta.url)));

Deno.test("outer step matches PyTorch (second-order inner Adam, RPO with torch.quantile, clipping, Adam)", async () => {
  await initBackend("wasm");
  const params: MrmParams = {
    dim: f.H,
    layers: [{ out: f.K, in: f.H, weight: Float32Array.from(f.W) }],
    sharedWeight: Float32Array.from(f.theta),
  };
  const X = Float32Array.from(f.X);
  const tasks = stepTasks(f.users);
  const s = f.settings;
  const res = await metaStep(params, X, tasks, {
    innerLr: s.inner_lr,
    innerSteps: s.inner_steps,
    firstOrder: false,
    rpoRho: s.rho,
    rpoGamma: s.gamma,
  }, new Float32Array(X.length));
  const e = f.expected;
  res.losses.forEach((l, i) =>
    assert.ok(Math.abs(l - e.losses[i]) <= 1e-5 * Math.max(1, e.losses[i]), `loss ${i}: ${l} vs ${e.losses[i]}`)
  );
  assert.ok(Math.abs(res.objective - e.objective) < 1e-5 * Math.max(1, e.objective));
  assert.ok(
    relErr(res.grads[0], e.grads.shared_weight) < 1e-4,
    `shared_weight grad ${res.grads[0]} vs ${e.grads.shared_weight}`,
  );
  assert.ok(
    relErr(res.grads[1], e.grads["layers.0.weight"]) < 1e-4,
    `layer grad rel err ${relErr(res.grads[1], e.grads["layers.0.weight"])}`,
  );
  const norm = clipGlobalNorm(res.grads, s.clip);
  assert.ok(Math.abs(norm - e.grad_norm) < 1e-4 * e.grad_norm);
  adamUpdate(adamInit([f.K, f.K * f.H]), [params.sharedWeight, params.layers[0].weight], res.grads, s.meta_lr);
  params.sharedWeight.forEach((v, i) => assert.ok(Math.abs(v - e.params.shared_weight[i]) < 1e-6));
  params.layers[0].weight.forEach((v, i) =>
    assert.ok(Math.abs(v - e.params["layers.0.weight"][i]) < 1e-5, `W[${i}] ${v} vs ${e.params["layers.0.weight"][i]}`)
  );
});
