/**
 * mrm-p: the MAP fit is a stationary point, and the implicit meta-gradient (K-space and
 * through a whole outer step) matches float64 central finite differences of the full
 * computation, fit included.
 */
import assert from "node:assert/strict";
import { initBackend } from "../../lib/backend.ts";
import { baseOutputs } from "../../lib/model/head.ts";
import { softplus } from "../../lib/model/kspace.ts";
import { initParams, isPersonal, type MrmParams, namedArrays, paramsFromTensors } from "../../lib/model/params.ts";
import { fitUser, mapLoss, personalGrad } from "../../lib/model/personal.ts";
import { loadCheckpoint, saveCheckpoint } from "../../lib/run/checkpoint.ts";
import { preset } from "../../lib/presets.ts";
import { metaStep } from "../../lib/train/step.ts";
import { randomArray, relErr, stepTasks, tempDir } from "../helpers.ts";

const K = 4;
const rand = (n: number, seed: number, scale = 1) => Float64Array.from(randomArray(n, seed), (v) => v * scale);

function queryLoss(w: ArrayLike<number>, zq: Float64Array, nq: number): number {
  let l = 0;
  for (let p = 0; p < nq; p++) {
    let m = 0;
    for (let k = 0; k < K; k++) m += w[k] * zq[p * K + k];
    l += softplus(-m);
  }
  return l / nq;
}

Deno.test("mrm-p fit: the gradient of the penalised loss vanishes at w* (checked by finite differences of F)", () => {
  for (const [ns, scale] of [[0, 1], [3, 1], [40, 4], [200, 10]] as const) {
    const zs = rand(ns * K, 11 + ns, scale);
    const prior = { w0: rand(K, 3), rho: rand(K, 5) };
    const { w } = fitUser(prior, zs, ns);
    const h = 1e-6;
    for (let k = 0; k < K; k++) {
      const a = Float64Array.from(w), b = Float64Array.from(w);
      a[k] += h;
      b[k] -= h;
      const g = (mapLoss(a, prior, zs, ns) - mapLoss(b, prior, zs, ns)) / (2 * h);
      assert.ok(Math.abs(g) < 1e-6, `ns=${ns}: dF/dw${k} = ${g} at the fit`);
    }
    if (ns === 0) assert.deepEqual(Array.from(w), Array.from(prior.w0), "no pairs: the fit is the prior mean");
  }
});

Deno.test("mrm-p meta-gradient (implicit differentiation) matches float64 finite differences of fit + query loss", () => {
  const ns = 12, nq = 9;
  const zs = rand(ns * K, 1, 3), zq = rand(nq * K, 2, 3), w0 = rand(K, 3), rho = rand(K, 4);
  const f = () => queryLoss(fitUser({ w0, rho }, zs, ns).w, zq, nq);
  const g = personalGrad({ w0, rho }, zs, ns, zq, nq);
  assert.ok(Math.abs(g.loss - f()) < 1e-12);
  const h = 1e-6;
  for (
    const [name, arr, an] of [["w0", w0, g.dW0], ["rho", rho, g.dRho], ["zs", zs, g.dZs], ["zq", zq, g.dZq]] as const
  ) {
    const fd = Array.from(arr, (v, i) => {
      arr[i] = v + h;
      const a = f();
      arr[i] = v - h;
      const b = f();
      arr[i] = v;
      return (a - b) / (2 * h);
    });
    assert.ok(relErr(an, fd) < 1e-5, `${name}: rel err ${relErr(an, fd)}`);
  }
});

/** A small mrm-p model with weights big enough that users' fits differ visibly. */
function personalModel(H: number): MrmParams {
  const p = initParams(H, { hiddenSizes: [3], seed: 9 });
  for (let i = 0; i < p.layers[0].weight.length; i++) p.layers[0].weight[i] *= 60;
  return { ...p, priorLogPrecision: Float32Array.from([0.3, -0.5, 0.1]) };
}

Deno.test("mrm-p outer step: gradients of W, w0 and rho match finite differences of the whole objective", async () => {
  await initBackend("wasm");
  const H = 6;
  const params = personalModel(H);
  const X = randomArray(40 * H, 21).map((v) => v * 30);
  const users = [
    { support: [[0, 1], [2, 3], [4, 9]], query: [[4, 5], [6, 7], [4, 8]] },
    { support: [[10, 11], [10, 12], [13, 14]], query: [[15, 16], [17, 18]] },
    { support: [], query: [[22, 23], [24, 25]] },
  ];
  const tasks = stepTasks(users);
  // the objective computed from scratch in float64: phi by baseOutputs, fit, mean query loss
  const objective = (p: MrmParams) => {
    const z = (pairs: number[][]) => {
      const out = new Float64Array(pairs.length * 3);
      pairs.forEach(([c, r], i) => {
        const a = baseOutputs(p, X.subarray(c * H, (c + 1) * H), 1),
          b = baseOutputs(p, X.subarray(r * H, (r + 1) * H), 1);
        for (let k = 0; k < 3; k++) out[i * 3 + k] = a[k] - b[k];
      });
      return out;
    };
    const losses = users.map((u) => {
      const w = fitUser({ w0: p.sharedWeight, rho: p.priorLogPrecision! }, z(u.support), u.support.length).w;
      const zq = z(u.query);
      let l = 0;
      for (let i = 0; i < u.query.length; i++) {
        l += softplus(-(w[0] * zq[i * 3] + w[1] * zq[i * 3 + 1] + w[2] * zq[i * 3 + 2]));
      }
      return l / u.query.length;
    });
    return losses.reduce((a, b) => a + b, 0) / losses.length;
  };
  const res = await metaStep(params, X, tasks, {
    innerLr: 0,
    innerSteps: 0,
    firstOrder: false,
    rpoRho: 0.5,
    rpoGamma: 0.5,
    objective: "mean",
  }, new Float32Array(X.length));
  assert.ok(Math.abs(res.objective - objective(params)) < 1e-5, `${res.objective} vs ${objective(params)}`);
  // finite differences in float64 over a float64 copy of every parameter
  const names = namedArrays(params).map(([n]) => n);
  assert.deepEqual(names, ["shared_weight", "prior_log_precision", "layers.0.weight"]);
  namedArrays(params).forEach(([name, arr], i) => {
    const h = name === "layers.0.weight" ? 1e-3 : 1e-4;
    const fd = Array.from(arr, (v, j) => {
      const at = (x: number) => {
        const q: MrmParams = {
          ...params,
          sharedWeight: Float64Array.from(params.sharedWeight) as unknown as Float32Array,
          priorLogPrecision: Float64Array.from(params.priorLogPrecision!) as unknown as Float32Array,
          layers: [{
            ...params.layers[0],
            weight: Float64Array.from(params.layers[0].weight) as unknown as Float32Array,
          }],
        };
        const target = name === "shared_weight"
          ? q.sharedWeight
          : name === "prior_log_precision"
          ? q.priorLogPrecision!
          : q.layers[0].weight;
        target[j] = x;
        return objective(q);
      };
      return (at(v + h) - at(v - h)) / (2 * h);
    });
    assert.ok(relErr(res.grads[i], fd) < 1e-4, `${name}: rel err ${relErr(res.grads[i], fd)}`);
  });
});

Deno.test("mrm-p checkpoints keep the prior; a prior of the wrong size is refused naming the file", async () => {
  await using t = await tempDir();
  const p = personalModel(5);
  const file = `${t.dir}/p.safetensors`;
  await saveCheckpoint(file, p, { ...preset("synthetic"), method: "mrm-p", ridge: 2 });
  const back = await loadCheckpoint(file);
  assert.ok(isPersonal(back.params));
  assert.deepEqual(Array.from(back.params.priorLogPrecision!), Array.from(p.priorLogPrecision!));
  assert.equal(back.config?.method, "mrm-p");
  assert.throws(
    () =>
      paramsFromTensors("bad.safetensors", {
        shared_weight: { data: new Float32Array(3), shape: [3] },
        prior_log_precision: { data: new Float32Array(2), shape: [2] },
        "layers.0.weight": { data: new Float32Array(15), shape: [3, 5] },
      }),
    /bad\.safetensors.*'prior_log_precision' has 2 values but the last layer has 3 outputs/,
  );
});
