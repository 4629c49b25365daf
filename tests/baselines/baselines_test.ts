import assert from "node:assert/strict";
import { initBackend } from "../../lib/backend.ts";
import { evaluateLinear, trainLinear } from "../../lib/baselines/linear.ts";
import { evaluateRm, hasScores } from "../../lib/baselines/rm.ts";
import { evaluateUserModels, fitDual, solve } from "../../lib/baselines/user.ts";
import { holdoutValidation } from "../../lib/data/splits.ts";
import { preset } from "../../lib/presets.ts";
import { prepareTasks } from "../../lib/run/run.ts";
import type { EmbeddingStore, StoreMeta } from "../../lib/store/store.ts";
import { randomArray } from "../helpers.ts";

/**
 * A store where user u prefers responses along direction dirOf(u): x_chosen =
 * x_rejected + 3 * dir + small noise, so every pair is separable by that direction.
 */
function separableStore(
  users: number,
  dirOf: (u: number) => number[],
  { convs = 12, dim = 8, scores = false } = {},
): EmbeddingStore {
  const meta: StoreMeta = {};
  const rows: number[] = [];
  const noise = randomArray(users * convs * 2 * dim, 3);
  let row = 0;
  for (let u = 0; u < users; u++) {
    const d = dirOf(u);
    meta[`u${String(u).padStart(3, "0")}`] = Array.from({ length: convs }, (_, c) => {
      const base = (u * convs + c) * 2 * dim;
      for (let h = 0; h < dim; h++) rows.push(noise[base + h] * 20); // rejected
      for (let h = 0; h < dim; h++) rows.push(noise[base + h] * 20 + 300 * d[h] + noise[base + dim + h]); // chosen
      row += 2;
      return {
        conversation_id: `c${c}`,
        chosen_idx: row - 1,
        rejected_idx: row - 2,
        chosen_score: scores ? (c % 4 === 0 ? -1 : 1) : null,
        rejected_score: scores ? 0 : null,
      };
    });
  }
  const embeddings = Float32Array.from(rows);
  return { prefix: "mem", embeddings, n: row, dim, meta, info: {} };
}
const e0 = [1, 0, 0, 0, 0, 0, 0, 0], e1 = [0, 1, 0, 0, 0, 0, 0, 0];
const config = { ...preset("synthetic"), data: "mem" };

Deno.test("bt on separable data reaches 100% for every user", async () => {
  await initBackend("wasm");
  const store = separableStore(20, () => e0);
  const { seen, unseen } = prepareTasks(store, config);
  const m = await trainLinear(store.embeddings, store.dim, seen, { k: 1, personalized: false, epochs: 20, lr: 0.05 });
  const r = await evaluateLinear(m, store.embeddings, [...seen, ...unseen]);
  assert.equal(r.overall.mean, 1);
  assert.equal(r.overall.worst10, 1);
});

Deno.test("lore with K=1 matches bt exactly (one base function, weight 1)", async () => {
  await initBackend("wasm");
  const store = separableStore(20, (u) => (u % 3 ? e0 : e1));
  const { seen, unseen } = prepareTasks(store, config);
  const opts = { epochs: 5, lr: 0.02, seed: 7 };
  const bt = await evaluateLinear(
    await trainLinear(store.embeddings, store.dim, seen, { k: 1, personalized: false, ...opts }),
    store.embeddings,
    [...seen, ...unseen],
  );
  const lore = await evaluateLinear(
    await trainLinear(store.embeddings, store.dim, seen, { k: 1, personalized: true, ...opts }),
    store.embeddings,
    [...seen, ...unseen],
  );
  assert.deepEqual(lore.users.map((u) => u.accuracy), bt.users.map((u) => u.accuracy));
});

Deno.test("two user types: lore (K=2) and per-user models personalize where bt cannot", async () => {
  await initBackend("wasm");
  // half the users prefer +e0, half prefer -e0 (contrarians): no single direction serves both
  const store = separableStore(24, (u) => (u % 2 ? e0 : e0.map((v) => -v)));
  const { seen, unseen } = prepareTasks(store, config);
  const all = [...seen, ...unseen];
  const bt = await evaluateLinear(
    await trainLinear(store.embeddings, store.dim, seen, { k: 1, personalized: false, epochs: 30, lr: 0.05 }),
    store.embeddings,
    all,
  );
  const lore = await evaluateLinear(
    await trainLinear(store.embeddings, store.dim, seen, { k: 2, personalized: true, epochs: 60, lr: 0.05 }),
    store.embeddings,
    all,
  );
  const user = evaluateUserModels(store.embeddings, store.dim, all);
  assert.ok(bt.overall.worst10 < 0.5, `bt must fail one user type, worst10 ${bt.overall.worst10}`);
  assert.ok(lore.overall.mean > bt.overall.mean + 0.2, `lore ${lore.overall.mean} vs bt ${bt.overall.mean}`);
  assert.equal(user.overall.mean, 1, "a per-user model separates each user's own pairs");
});

Deno.test("rm: accuracy of the stored scores, and detection of missing scores", () => {
  const store = separableStore(6, () => e0, { scores: true });
  const { seen, unseen } = prepareTasks(store, config);
  const all = [...seen, ...unseen];
  assert.ok(hasScores(all));
  const r = evaluateRm(all);
  for (const u of r.users) {
    const t = all.find((x) => x.id === u.id)!;
    const want = t.test.filter((p) =>
      (t.entries[p].chosen_score as number) > (t.entries[p].rejected_score as number)
    ).length / t.test.length;
    assert.equal(u.accuracy, want);
  }
  assert.ok(r.overall.mean < 1 && r.overall.mean > 0.5);
  assert.equal(hasScores(prepareTasks(separableStore(4, () => e0), config).seen), false);
});

Deno.test("per-user dual logistic regression: Newton solve is exact on a small system", () => {
  const a = Float64Array.from([4, 1, 2, 1, 3, 0, 2, 0, 5]);
  const x = solve(a, Float64Array.from([1, 2, 3]), 3);
  const back = [0, 1, 2].map((i) => a[i * 3] * x[0] + a[i * 3 + 1] * x[1] + a[i * 3 + 2] * x[2]);
  back.forEach((v, i) => assert.ok(Math.abs(v - (i + 1)) < 1e-12));
  // stationarity of the regularized objective: G (l'(G beta)/n + lambda beta) = 0
  const g = Float64Array.from([1, 0.5, 0.5, 1]);
  const beta = fitDual(g, 2, { lambda: 0.1, iterations: 50 });
  const u = [g[0] * beta[0] + g[1] * beta[1], g[2] * beta[0] + g[3] * beta[1]];
  const inner = u.map((ui, i) => -1 / (1 + Math.exp(ui)) / 2 + 0.1 * beta[i]);
  assert.ok(Math.abs(g[0] * inner[0] + g[1] * inner[1]) < 1e-10 && Math.abs(g[2] * inner[0] + g[3] * inner[1]) < 1e-10);
});

Deno.test("validation holdout takes whole conversations from the end of train and never touches test", () => {
  const entries = Array.from(
    { length: 10 },
    (_, i) => ({ conversation_id: `c${Math.floor(i / 2)}`, chosen_idx: 0, rejected_idx: 1 }),
  );
  const train = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const r = holdoutValidation(entries, train, 0.2);
  assert.deepEqual(r.val, [8, 9]);
  assert.deepEqual(r.train, [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(holdoutValidation(entries, [0, 1], 0.5).val, [], "one conversation stays in train");
  const store = separableStore(8, () => e0);
  const plain = prepareTasks(store, config), held = prepareTasks(store, { ...config, valHoldout: 0.25 });
  held.seen.forEach((t, i) => {
    assert.deepEqual(t.test, plain.seen[i].test);
    assert.deepEqual([...t.train, ...t.val].sort(), [...plain.seen[i].train].sort());
    assert.ok(t.val.length > 0);
  });
  assert.ok(held.unseen.every((t) => t.val.length === 0));
});
