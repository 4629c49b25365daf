import assert from "node:assert/strict";
import { adaptTheta, btLoss, taskGrad } from "../../lib/model/kspace.ts";
import { randomArray } from "../helpers.ts";

const f64 = (a: Float32Array, s = 1) => Float64Array.from(a, (v) => v * s);

/** Query loss after inner Adam, as a plain function (the forward only). */
function queryLoss(
  theta: Float64Array,
  zs: Float64Array,
  ns: number,
  zq: Float64Array,
  nq: number,
  lr: number,
  steps: number,
): number {
  return btLoss(adaptTheta(theta, zs, ns, { lr, steps }), zq, nq);
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, rel: number, what: string, abs = 1e-12): void {
  let num = 0, den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  assert.ok(
    Math.sqrt(num) <= rel * Math.sqrt(den) + abs,
    `${what}: relative error ${Math.sqrt(num / (den || 1))} > ${rel}\n got  ${Array.from(got)}\n want ${
      Array.from(want)
    }`,
  );
}

for (
  const { K, steps, lr } of [{ K: 2, steps: 1, lr: 0.3 }, { K: 3, steps: 3, lr: 0.2 }, { K: 4, steps: 5, lr: 0.05 }]
) {
  Deno.test(`taskGrad (second order, K=${K}, ${steps} inner Adam steps) matches float64 finite differences`, () => {
    const ns = 5, nq = 6, h = 1e-6;
    const theta = f64(randomArray(K, 11 + K));
    const zs = f64(randomArray(ns * K, 3 + K), 2), zq = f64(randomArray(nq * K, 5 + K), 2);
    const g = taskGrad(theta, zs, ns, zq, nq, { lr, steps });
    assert.ok(Math.abs(g.loss - queryLoss(theta, zs, ns, zq, nq, lr, steps)) < 1e-12);
    const fd = (arr: Float64Array, i: number) => {
      const keep = arr[i];
      arr[i] = keep + h;
      const up = queryLoss(theta, zs, ns, zq, nq, lr, steps);
      arr[i] = keep - h;
      const dn = queryLoss(theta, zs, ns, zq, nq, lr, steps);
      arr[i] = keep;
      return (up - dn) / (2 * h);
    };
    // With one fresh Adam step the support terms are ~eps/g^2 (1e-9): FD noise level.
    const abs = steps === 1 ? 5e-9 : 1e-12;
    assertClose(g.dTheta, Array.from(theta, (_, i) => fd(theta, i)), 1e-5, "dTheta", abs);
    assertClose(g.dZs, Array.from(zs, (_, i) => fd(zs, i)), 1e-5, "dZs", abs);
    assertClose(g.dZq, Array.from(zq, (_, i) => fd(zq, i)), 1e-5, "dZq", abs);
  });
}

Deno.test("taskGrad: second-order terms are real (differ from first order) and first order is the gradient at the adapted theta", () => {
  const K = 3, ns = 4, nq = 4, lr = 0.2, steps = 3;
  const theta = f64(randomArray(K, 1)), zs = f64(randomArray(ns * K, 2), 3), zq = f64(randomArray(nq * K, 4), 3);
  const so = taskGrad(theta, zs, ns, zq, nq, { lr, steps });
  const fo = taskGrad(theta, zs, ns, zq, nq, { lr, steps, firstOrder: true });
  const adapted = adaptTheta(theta, zs, ns, { lr, steps });
  const direct = taskGrad(adapted, zs, ns, zq, nq, { lr, steps: 0 });
  assertClose(fo.dTheta, direct.dTheta, 1e-12, "first order = gradient at adapted theta");
  assert.ok(fo.dZs.every((v) => v === 0));
  const diff = so.dTheta.reduce((s, v, i) => s + Math.abs(v - fo.dTheta[i]), 0);
  assert.ok(diff > 1e-4, `second and first order should differ, |diff| = ${diff}`);
});

Deno.test("adaptTheta: one fresh Adam step moves each logit by lr against the gradient sign", () => {
  const theta = new Float64Array([0.3, -0.2]);
  const z = new Float64Array([1, -1, 2, 0.5]);
  const t1 = adaptTheta(theta, z, 2, { lr: 1e-3, steps: 1 });
  // BT gradient pushes weight to the base with larger z (base 0) -> theta0 up, theta1 down
  assert.ok(Math.abs(t1[0] - (0.3 + 1e-3)) < 1e-9 && Math.abs(t1[1] - (-0.2 - 1e-3)) < 1e-9, `${t1}`);
});
