import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../../lib/backend.ts";
import { initParams, type MrmParams, namedArrays } from "../../lib/model/params.ts";
import { metaStep } from "../../lib/train/step.ts";
import { residentRows, setResidentChunkBytes } from "../../lib/model/project.ts";
import { adamInit, adamUpdate, clipGlobalNorm } from "../../lib/train/adam.ts";
import { randomArray, relErr, stepTasks } from "../helpers.ts";

// ---- An independent float64 MRM written for this test: full network with biases,
// ---- r(x) per response, inner Adam with an analytic theta-gradient, RPO, then
// ---- central finite differences over every parameter.
type P64 = { W: number[][][]; b: (number[] | null)[]; theta: number[] };
const H = 6, LR = 0.5, STEPS = 3, RHO = 0.3, GAMMA = 0.5;

function phi(p: P64, x: ArrayLike<number>): number[] {
  let h = Array.from(x, (v) => 0.01 * v);
  p.W.forEach((W, i) => {
    h = W.map((row, o) => row.reduce((s, w, j) => s + w * h[j], p.b[i] ? p.b[i]![o] : 0));
  });
  return h;
}
function soft(t: number[]): number[] {
  const m = Math.max(...t), e = t.map((v) => Math.exp(v - m)), s = e.reduce((a, b) => a + b);
  return e.map((v) => v / s);
}
function loss(theta: number[], diffs: number[][]): number {
  const w = soft(theta);
  return diffs.reduce((s, d) => s + Math.log1p(Math.exp(-d.reduce((a, v, k) => a + v * w[k], 0))), 0) / diffs.length;
}
function lossGrad(theta: number[], diffs: number[][]): number[] {
  const w = soft(theta), K = theta.length;
  const dw = new Array(K).fill(0);
  for (const d of diffs) {
    const m = d.reduce((a, v, k) => a + v * w[k], 0);
    const c = -1 / (1 + Math.exp(m)) / diffs.length;
    for (let k = 0; k < K; k++) dw[k] += c * d[k];
  }
  return theta.map((_, j) => w.reduce((s, wk, k) => s + dw[k] * wk * ((k === j ? 1 : 0) - w[j]), 0));
}
function objective(
  p: P64,
  users: { support: [number, number][]; query: [number, number][] }[],
  X: Float32Array,
): number {
  const row = (r: number) => X.subarray(r * H, (r + 1) * H);
  const L = users.map((u) => {
    const d = (pairs: [number, number][]) =>
      pairs.map(([c, r]) => {
        const a = phi(p, row(c)), b = phi(p, row(r));
        return a.map((v, k) => v - b[k]);
      });
    const ds = d(u.support), dq = d(u.query);
    let th = [...p.theta];
    const m = th.map(() => 0), v = th.map(() => 0);
    for (let t = 1; t <= STEPS; t++) {
      const g = lossGrad(th, ds);
      th = th.map((x, k) => {
        m[k] = 0.9 * m[k] + 0.1 * g[k];
        v[k] = 0.999 * v[k] + 0.001 * g[k] * g[k];
        return x - LR * (m[k] / (1 - 0.9 ** t)) / (Math.sqrt(v[k] / (1 - 0.999 ** t)) + 1e-8);
      });
    }
    return loss(th, dq);
  });
  const s = [...L].sort((a, b) => a - b), pos = (1 - RHO) * (L.length - 1), lo = Math.floor(pos);
  const tau = s[lo] + (pos - lo) * ((s[Math.min(lo + 1, s.length - 1)]) - s[lo]);
  return L.reduce((acc, l) => acc + l / (1 + Math.exp(-(l - tau) / GAMMA)), 0);
}
function toP64(p: MrmParams): P64 {
  return {
    W: p.layers.map((l) =>
      Array.from({ length: l.out }, (_, o) => Array.from(l.weight.subarray(o * l.in, (o + 1) * l.in)))
    ),
    b: p.layers.map((l) => (l.bias ? Array.from(l.bias) : null)),
    theta: Array.from(p.sharedWeight),
  };
}
/** FD gradient in the library's namedArrays() order. */
function fdGrads(p: P64, users: Parameters<typeof objective>[1], X: Float32Array): number[][] {
  const h = 1e-6;
  const fd = (get: () => number, set: (v: number) => void) => {
    const k = get();
    set(k + h);
    const up = objective(p, users, X);
    set(k - h);
    const dn = objective(p, users, X);
    set(k);
    return (up - dn) / (2 * h);
  };
  const out: number[][] = [p.theta.map((_, i) => fd(() => p.theta[i], (v) => (p.theta[i] = v)))];
  p.W.forEach((W, li) => {
    out.push(W.flatMap((row, o) => row.map((_, j) => fd(() => p.W[li][o][j], (v) => (p.W[li][o][j] = v)))));
    if (p.b[li]) out.push(p.b[li]!.map((_, o) => fd(() => p.b[li]![o], (v) => (p.b[li]![o] = v))));
  });
  return out;
}

// ---- The same step through the library.
function fixture(hiddenSizes: number[], useBias: boolean) {
  const params = initParams(H, { hiddenSizes, useBias, seed: 3 });
  // make base functions large enough that the losses differ visibly between users
  const l0 = params.layers[0];
  for (let i = 0; i < l0.weight.length; i++) l0.weight[i] *= 40;
  const nRows = 40;
  const X = randomArray(nRows * H, 99).map((v) => v * 30);
  const users: { support: [number, number][]; query: [number, number][] }[] = [
    { support: [[0, 1], [2, 3]], query: [[4, 5], [6, 7], [4, 8]] },
    { support: [[10, 11], [10, 12], [13, 14]], query: [[15, 16]] },
    { support: [[20, 21]], query: [[22, 23], [24, 25], [26, 27], [20, 21]] },
  ];
  const tasks = stepTasks(users);
  return { params, X, users, tasks };
}
const opts = { innerLr: LR, innerSteps: STEPS, firstOrder: false, rpoRho: RHO, rpoGamma: GAMMA };

Deno.test("one full outer step (second-order MAML + RPO + clip + Adam) matches an independent float64 implementation", async () => {
  await initBackend("wasm");
  const { params, X, users, tasks } = fixture([2], false);
  const ref = fdGrads(toP64(params), users, X);
  const res = await metaStep(params, X, tasks, opts, new Float32Array(X.length));
  assert.ok(Math.abs(res.objective - objective(toP64(params), users, X)) < 1e-5);
  res.grads.forEach((g, i) => assert.ok(relErr(g, ref[i]) < 1e-4, `grad ${i}: rel err ${relErr(g, ref[i])}`));
  // clip (to 0.5 here, so the fixture clips) and one Adam step, both sides
  const refNorm = Math.sqrt(ref.flat().reduce((s, v) => s + v * v, 0));
  const maxNorm = 0.5;
  assert.ok(refNorm > maxNorm, `fixture should exercise clipping (norm ${refNorm})`);
  const refClipped = ref.map((g) => g.map((v) => v * maxNorm / (refNorm + 1e-6)));
  const expected = namedArrays(params).map(([, a], i) =>
    Array.from(a, (v, j) => {
      const g = refClipped[i][j], m = 0.1 * g, s = 0.001 * g * g;
      return v - 0.01 * (m / 0.1) / (Math.sqrt(s / 0.001) + 1e-8);
    })
  );
  clipGlobalNorm(res.grads, maxNorm);
  const arrays = namedArrays(params).map(([, a]) => a);
  adamUpdate(adamInit(arrays.map((a) => a.length)), arrays, res.grads, 0.01);
  arrays.forEach((a, i) =>
    a.forEach((v, j) => assert.ok(Math.abs(v - expected[i][j]) < 1e-5, `param ${i}[${j}]: ${v} vs ${expected[i][j]}`))
  );
});

Deno.test("outer step with two layers and biases: gradients of every layer match finite differences; biases get none", async () => {
  await initBackend("wasm");
  const { params, X, users, tasks } = fixture([3, 2], true);
  const ref = fdGrads(toP64(params), users, X);
  const res = await metaStep(params, X, tasks, opts, new Float32Array(X.length));
  const names = namedArrays(params).map(([n]) => n);
  res.grads.forEach((g, i) => {
    if (names[i].endsWith(".bias")) {
      assert.ok(
        g.every((v) => v === 0) && ref[i].every((v) => Math.abs(v) < 1e-6),
        `${names[i]} should have no gradient`,
      );
    } else assert.ok(relErr(g, ref[i]) < 1e-4, `${names[i]}: rel err ${relErr(g, ref[i])}`);
  });
});

Deno.test("backends agree: the same outer step on cpu, wasm and webgpu (software adapter; store whole or in chunks)", async () => {
  const out: Record<string, Float64Array[]> = {};
  for (const b of ["cpu", "wasm", "webgpu", "webgpu-chunked"] as const) {
    const backend = b === "webgpu-chunked" ? "webgpu" : b;
    await initBackend(backend);
    assert.equal(tf.getBackend(), backend);
    const { params, X, tasks } = fixture([2], false);
    // chunks of 3 rows: a step's rows come from several resident tensors
    setResidentChunkBytes(b === "webgpu-chunked" ? 3 * params.dim * 4 : undefined);
    out[b] = (await metaStep(params, X, tasks, opts, new Float32Array(X.length))).grads;
    if (b === "webgpu-chunked") assert.ok(residentRows(X, params.dim)!.chunks.length > 2);
  }
  setResidentChunkBytes(undefined);
  await initBackend("wasm");
  for (const b of ["cpu", "webgpu", "webgpu-chunked"]) {
    out[b].forEach((g, i) =>
      assert.ok(relErr(g, out.wasm[i]) < 1e-4, `${b} vs wasm, grad ${i}: ${relErr(g, out.wasm[i])}`)
    );
  }
});

Deno.test("objective 'mean' (plain MAML) weights every user's query loss by 1/B", async () => {
  await initBackend("wasm");
  const { params, X, tasks } = fixture([2], false);
  const res = await metaStep(params, X, tasks, { ...opts, objective: "mean" }, new Float32Array(X.length));
  assert.ok(Math.abs(res.objective - res.losses.reduce((a, b) => a + b, 0) / res.losses.length) < 1e-12);
  // its theta gradient is the mean of the per-user ones: compare with single-user steps
  const single = await Promise.all(
    tasks.map((t) => metaStep(params, X, [t], { ...opts, objective: "mean" }, new Float32Array(X.length))),
  );
  const mean = res.grads[0].map((_, k) => single.reduce((s, r) => s + r.grads[0][k], 0) / single.length);
  res.grads[0].forEach((g, k) => assert.ok(Math.abs(g - mean[k]) < 1e-9));
});
