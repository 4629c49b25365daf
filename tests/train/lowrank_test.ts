import assert from "node:assert/strict";
import { PyRandom } from "../../lib/data/rng.ts";
import { fitLowRank, type PairRows, symmetricEigen, topSvd } from "../../lib/train/lowrank.ts";
import { sigmoid } from "../../lib/model/kspace.ts";
import { initBackend } from "../../lib/backend.ts";
import { writeSynthetic } from "../../lib/data/synthetic.ts";
import { loadStore } from "../../lib/store/store.ts";
import { readTruth } from "../../lib/eval/oracle.ts";
import { personalStartUsers, prepareTasks } from "../../lib/run/run.ts";
import type { UserTask } from "../../lib/data/tasks.ts";
import { type MrmParams, namedArrays } from "../../lib/model/params.ts";
import { preset } from "../../lib/presets.ts";
import { initPersonal } from "../../lib/train/personal_init.ts";
import { memStore, tempDir } from "../helpers.ts";

function randomMatrix(rows: number, cols: number, rng: PyRandom): Float64Array {
  return Float64Array.from({ length: rows * cols }, () => rng.normal());
}

Deno.test("symmetricEigen: A v = lambda v, orthonormal vectors, trace kept", () => {
  const rng = new PyRandom(1), m = 9;
  const b = randomMatrix(m, m, rng), a = new Float64Array(m * m);
  for (let i = 0; i < m; i++) for (let j = 0; j < m; j++) a[i * m + j] = b[i * m + j] + b[j * m + i];
  const { values, vectors } = symmetricEigen(a, m);
  for (let j = 0; j < m; j++) {
    for (let i = 0; i < m; i++) {
      let av = 0;
      for (let k = 0; k < m; k++) av += a[i * m + k] * vectors[k * m + j];
      assert.ok(Math.abs(av - values[j] * vectors[i * m + j]) < 1e-10);
    }
    for (let l = 0; l < m; l++) {
      let d = 0;
      for (let k = 0; k < m; k++) d += vectors[k * m + j] * vectors[k * m + l];
      assert.ok(Math.abs(d - (j === l ? 1 : 0)) < 1e-12);
    }
    if (j > 0) assert.ok(values[j] <= values[j - 1]);
  }
  let trace = 0;
  for (let i = 0; i < m; i++) trace += a[i * m + i];
  assert.ok(Math.abs(values.reduce((s, v) => s + v, 0) - trace) < 1e-10);
});

Deno.test("topSvd: A v = s u, A^T u = s v, and all singular values carry the Frobenius norm", () => {
  const rng = new PyRandom(2), rows = 12, cols = 30;
  const a = randomMatrix(rows, cols, rng);
  const { values, right, left } = topSvd(a, rows, cols, rows, { rng, iterations: 200 });
  for (let j = 0; j < rows; j++) {
    for (let i = 0; i < rows; i++) {
      let av = 0;
      for (let h = 0; h < cols; h++) av += a[i * cols + h] * right[j * cols + h];
      assert.ok(Math.abs(av - values[j] * left[j * rows + i]) < 1e-8, `A v = s u at ${j},${i}`);
    }
    for (let h = 0; h < cols; h++) {
      let au = 0;
      for (let i = 0; i < rows; i++) au += a[i * cols + h] * left[j * rows + i];
      assert.ok(Math.abs(au - values[j] * right[j * cols + h]) < 1e-8, `A^T u = s v at ${j},${h}`);
    }
  }
  const fro = a.reduce((s, v) => s + v * v, 0);
  assert.ok(Math.abs(values.reduce((s, v) => s + v * v, 0) - fro) < 1e-8 * fro);
});

/** Users with weights o + (rank-2 deviations), Bradley–Terry labels drawn from them. */
function planted(users: number, pairs: number, dim: number, seed: number, spread = 2) {
  const rng = new PyRandom(seed);
  const o = Float64Array.from({ length: dim }, () => rng.normal() / Math.sqrt(dim));
  const dirs = [0, 1].map(() => {
    const v = Float64Array.from({ length: dim }, () => rng.normal());
    const n = Math.hypot(...v);
    return v.map((x) => x / n);
  });
  const start = new Int32Array(users + 1);
  const d = new Float64Array(users * pairs * dim);
  for (let a = 0; a < users; a++) {
    start[a + 1] = start[a] + pairs;
    const c = [rng.normal() * spread, rng.normal() * spread];
    const w = o.map((x, h) => x + c[0] * dirs[0][h] + c[1] * dirs[1][h]);
    for (let p = 0; p < pairs; p++) {
      const row = (a * pairs + p) * dim;
      let m = 0;
      for (let h = 0; h < dim; h++) {
        d[row + h] = rng.normal();
        m += w[h] * d[row + h];
      }
      // orient the pair as (chosen - rejected): flip it when the user prefers the other reply
      if (rng.random() >= sigmoid(m)) { for (let h = 0; h < dim; h++) d[row + h] = -d[row + h]; }
    }
  }
  return { rows: { d, start, dim } as PairRows, dirs };
}

Deno.test("fitLowRank: the optimality conditions of the nuclear-norm problem hold at the result", () => {
  const { rows } = planted(16, 40, 10, 3);
  const U = 16, H = 10, mu = 1;
  const fit = fitLowRank(rows, { shrink: 0.4, mu, iterations: 3000, rank: 10, seed: 1 });
  assert.ok(fit.rank >= 1 && fit.rank < 10, `rank ${fit.rank}`);
  // gradients of the smooth part at the result
  const go = new Float64Array(H), gm = new Float64Array(U * H);
  for (let a = 0; a < U; a++) {
    for (let r = rows.start[a]; r < rows.start[a + 1]; r++) {
      let m = 0;
      for (let h = 0; h < H; h++) m += (fit.shared[h] + fit.deviations[a * H + h]) * rows.d[r * H + h];
      const s = sigmoid(-m);
      for (let h = 0; h < H; h++) gm[a * H + h] -= s * rows.d[r * H + h];
    }
  }
  for (let h = 0; h < H; h++) {
    go[h] = mu * fit.shared[h];
    for (let a = 0; a < U; a++) go[h] += gm[a * H + h];
  }
  // stationarity in o
  assert.ok(Math.max(...go.map(Math.abs)) < 1e-4, `|grad o| ${Math.max(...go.map(Math.abs))}`);
  // -G is a subgradient of lambda |M|_*: |G|_op <= lambda and <-G, M> = lambda |M|_*
  const gsv = topSvd(gm, U, H, H, { rng: new PyRandom(4), iterations: 300 }).values;
  assert.ok(gsv[0] <= fit.lambda * (1 + 1e-3), `|G|_op ${gsv[0]} vs lambda ${fit.lambda}`);
  const msv = topSvd(fit.deviations, U, H, H, { rng: new PyRandom(5), iterations: 300 }).values;
  const nuclear = msv.reduce((s, v) => s + v, 0);
  let inner = 0;
  for (let i = 0; i < U * H; i++) inner -= gm[i] * fit.deviations[i];
  assert.ok(
    Math.abs(inner - fit.lambda * nuclear) < 1e-3 * fit.lambda * nuclear,
    `${inner} vs ${fit.lambda * nuclear}`,
  );
});

Deno.test("fitLowRank: finds the planted directions users differ in, and nothing in pure noise", () => {
  const { rows, dirs } = planted(40, 150, 24, 6);
  const fit = fitLowRank(rows, { seed: 2 });
  const top = topSvd(fit.deviations, 40, 24, 2, { rng: new PyRandom(3) });
  for (const d of dirs) {
    // length of d's projection on the span of the top two right singular vectors
    let s = 0;
    for (let j = 0; j < 2; j++) {
      let dot = 0;
      for (let h = 0; h < 24; h++) dot += top.right[j * 24 + h] * d[h];
      s += dot * dot;
    }
    assert.ok(Math.sqrt(s) > 0.95, `planted direction recovered with cosine ${Math.sqrt(s)}`);
  }
  // every user the same: the deviations are cut to nothing at shrink 1 (lambda at the noise level)
  const same = planted(40, 150, 24, 7, 0);
  const flat = fitLowRank(same.rows, { shrink: 1, seed: 2 });
  assert.equal(flat.rank, 0);
  assert.ok(flat.noise > 0);
});

Deno.test("initPersonal: a start fitted in a reduced space (fitDim < H) finds the users' directions like the full fit", async () => {
  await initBackend("wasm");
  await using t = await tempDir();
  await writeSynthetic(`${t.dir}/s`, { preset: "reddit", users: 40, dim: 48, seed: 5 });
  const store = await loadStore(`${t.dir}/s`);
  const truth = (await readTruth(`${t.dir}/s`))!;
  const { seen } = prepareTasks(store, preset("reddit"));
  const H = store.dim;
  // how much of each true direction lies in the span of the K bases
  const coverage = (weight: Float32Array, k: number) => {
    const q = Float64Array.from(weight);
    for (let j = 0; j < k; j++) {
      for (let i = 0; i < j; i++) {
        let dot = 0;
        for (let h = 0; h < H; h++) dot += q[i * H + h] * q[j * H + h];
        for (let h = 0; h < H; h++) q[j * H + h] -= dot * q[i * H + h];
      }
      const n = Math.hypot(...q.subarray(j * H, (j + 1) * H));
      for (let h = 0; h < H; h++) q[j * H + h] /= n;
    }
    return truth.directions!.slice(0, 3).map((d) => {
      let s = 0;
      for (let j = 0; j < k; j++) {
        let dot = 0;
        for (let h = 0; h < H; h++) dot += q[j * H + h] * d[h];
        s += dot * dot;
      }
      return Math.sqrt(s);
    });
  };
  const opts = { k: 4, ridge: 1, shrink: 0.5, seed: 1 };
  const full = await initPersonal(store.embeddings, H, seen, opts);
  const reduced = await initPersonal(store.embeddings, H, seen, { ...opts, fitDim: 24 });
  const [cf, cr] = [coverage(full.layers[0].weight, 4), coverage(reduced.layers[0].weight, 4)];
  // quality and the two tastes are found by both; the reduced fit loses little
  for (let l = 0; l < 3; l++) {
    assert.ok(cf[l] > 0.7, `full fit covers direction ${l} at ${cf[l]}`);
    assert.ok(cr[l] > cf[l] - 0.1, `reduced fit covers direction ${l} at ${cr[l]} (full ${cf[l]})`);
  }
  // the bases are in the embedding space and every prior precision is finite and positive
  assert.equal(reduced.layers[0].weight.length, 4 * H);
  for (const r of reduced.priorLogPrecision!) assert.ok(Number.isFinite(r));
});

Deno.test("fitLowRank: a non-finite pair difference stops the fit with an error, not NaN weights", () => {
  const { rows } = planted(6, 10, 5, 9);
  rows.d[17] = NaN;
  assert.throws(() => fitLowRank(rows, { iterations: 5 }), /non-finite/);
});

Deno.test("mrm-p --transductive: the start fits the unseen users' support pairs, never their test or validation pairs", async () => {
  await initBackend("wasm");
  const store = memStore(60, 16, 3);
  const config = { ...preset("synthetic"), data: "mem", valHoldout: 0.2 };
  const tasks = prepareTasks(store, config);
  const opts = { k: 3, ridge: 1, shrink: 0.5, seed: 1 };
  const start = (t: { seen: UserTask[]; unseen: UserTask[] }, transductive: boolean) =>
    initPersonal(store.embeddings, 16, personalStartUsers(t, { transductive }), opts);
  const flat = (p: MrmParams) => namedArrays(p).flatMap(([, a]) => Array.from(a));
  // each unseen user's pairs in [positions] with chosen and rejected swapped
  const swapped = (positions: (t: UserTask) => number[]) => ({
    seen: tasks.seen,
    unseen: tasks.unseen.map((t) => {
      const chosen = t.chosen.slice(), rejected = t.rejected.slice();
      for (const p of positions(t)) [chosen[p], rejected[p]] = [t.rejected[p], t.chosen[p]];
      return { ...t, chosen, rejected };
    }),
  });
  const base = flat(await start(tasks, true));
  assert.ok(tasks.unseen.every((t) => t.test.length > 0) && tasks.seen.some((t) => t.val.length > 0));
  // the unseen users' test labels flipped: the same start, to the bit
  assert.deepEqual(flat(await start(swapped((t) => t.test), true)), base);
  // their support labels flipped: another start (they are used) ...
  assert.notDeepEqual(flat(await start(swapped((t) => t.train), true)), base);
  // ... which the release protocol's start ignores
  assert.deepEqual(flat(await start(swapped((t) => t.train), false)), flat(await start(tasks, false)));
  // the seen users' validation pairs are not fitted either
  const seenVal = {
    seen: tasks.seen.map((t) => {
      const chosen = t.chosen.slice(), rejected = t.rejected.slice();
      for (const p of t.val) [chosen[p], rejected[p]] = [t.rejected[p], t.chosen[p]];
      return { ...t, chosen, rejected };
    }),
    unseen: tasks.unseen,
  };
  assert.deepEqual(flat(await start(seenVal, true)), base);
});
