import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../../lib/backend.ts";
import { taskGrad } from "../../lib/model/kspace.ts";
import { personalGrad } from "../../lib/model/personal.ts";
import { kspaceGpu, kspaceGpuReady } from "../../lib/train/kspace_gpu.ts";
import { rpo } from "../../lib/train/rpo.ts";
import { relErr } from "../helpers.ts";

// five users of different sizes in one step: [support, query] pairs each
const K = 4;
const sizes = [[5, 4], [30, 10], [8, 3], [60, 20], [12, 12]];
const B = sizes.length;
const meta: number[] = [];
let P = 0;
for (const [ns, nq] of sizes) {
  meta.push(P, ns, P + ns, nq);
  P += ns + nq;
}
const z = Float32Array.from({ length: P * K }, (_, i) => Math.sin(i * 1.7 + 0.3) * 2 + 0.4 * Math.cos(i * 0.37));
const theta = [0.1, -0.3, 0.2, 0.5], rho = [0.5, -0.2, 1.0, 0.1];

// The float64 host functions (checked against finite differences and PyTorch elsewhere) are the reference.
const cases = [
  { name: "MRM as released (1 Adam step of 1e-3)", personal: false, steps: 1, lr: 1e-3, firstOrder: false, tol: 1e-5 },
  { name: "MRM, 3 Adam steps of 0.1", personal: false, steps: 3, lr: 0.1, firstOrder: false, tol: 2e-4 },
  { name: "MRM first order", personal: false, steps: 2, lr: 0.01, firstOrder: true, tol: 1e-5 },
  { name: "mrm-p (MAP fit, implicit gradient)", personal: true, steps: 0, lr: 0, firstOrder: false, tol: 1e-5 },
];

for (const c of cases) {
  for (const objective of ["rpo", "mean"] as const) {
    Deno.test(`K-space kernel on webgpu = the float64 host math: ${c.name}, ${objective}`, async () => {
      await initBackend("webgpu");
      await kspaceGpuReady();
      const out = tf.tidy(() =>
        kspaceGpu(
          tf.tensor2d(z, [P, K]),
          tf.tensor1d(new Int32Array(meta), "int32"),
          tf.tensor1d([...theta, ...rho]),
          {
            k: K,
            users: B,
            pairs: P,
            personal: c.personal,
            innerLr: c.lr,
            innerSteps: c.steps,
            firstOrder: c.firstOrder,
            objective,
            rpoRho: 0.4,
            rpoGamma: 0.1,
            thetaOffset: 0,
            rhoOffset: K,
          },
        )
      );
      const got = await out.data();
      out.dispose();
      await initBackend("wasm");
      const per = sizes.map(([ns, nq], b) => {
        const zs = Float64Array.from(z.subarray(meta[4 * b] * K, (meta[4 * b] + ns) * K));
        const zq = Float64Array.from(z.subarray(meta[4 * b + 2] * K, (meta[4 * b + 2] + nq) * K));
        if (c.personal) {
          const g = personalGrad({ w0: theta, rho }, zs, ns, zq, nq);
          return { loss: g.loss, dTheta: g.dW0, dRho: g.dRho, dZs: g.dZs, dZq: g.dZq };
        }
        const g = taskGrad(theta, zs, ns, zq, nq, { lr: c.lr, steps: c.steps, firstOrder: c.firstOrder });
        return { ...g, dRho: new Float64Array(K) };
      });
      const losses = per.map((p) => p.loss);
      const want = objective === "mean"
        ? { objective: losses.reduce((a, b) => a + b) / B, coef: new Float64Array(B).fill(1 / B) }
        : rpo(losses, 0.4, 0.1);
      const dz = new Float64Array(P * K), dTheta = new Float64Array(K), dRho = new Float64Array(K);
      per.forEach((p, b) => {
        dz.set(p.dZs.map((v) => v * want.coef[b]), meta[4 * b] * K);
        dz.set(p.dZq.map((v) => v * want.coef[b]), meta[4 * b + 2] * K);
        for (let k = 0; k < K; k++) {
          dTheta[k] += want.coef[b] * p.dTheta[k];
          dRho[k] += want.coef[b] * p.dRho[k];
        }
      });
      const PK = P * K;
      assert.ok(relErr(got.subarray(PK + 2 * K + 1), losses) < c.tol, "losses");
      assert.ok(Math.abs(got[PK + 2 * K] - want.objective) < c.tol * Math.abs(want.objective), "objective");
      assert.ok(relErr(got.subarray(PK, PK + K), dTheta) < c.tol, `dTheta ${relErr(got.subarray(PK, PK + K), dTheta)}`);
      if (c.personal) assert.ok(relErr(got.subarray(PK + K, PK + 2 * K), dRho) < c.tol, "dRho");
      if (c.firstOrder) assert.equal(got.subarray(0, PK).filter((v, i) => v !== 0 && dz[i] === 0).length, 0);
      assert.ok(relErr(got.subarray(0, PK), dz) < c.tol, `dz ${relErr(got.subarray(0, PK), dz)}`);
    });
  }
}
