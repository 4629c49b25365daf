import assert from "node:assert/strict";
import { quantile, rpo } from "../../lib/train/rpo.ts";
import { lrFactor, warmupSteps } from "../../lib/train/schedule.ts";

Deno.test("quantile interpolates linearly like torch.quantile", () => {
  assert.equal(quantile([4, 1, 3, 2], 0.5).value, 2.5);
  assert.equal(quantile([4, 1, 3, 2], 1).value, 4);
  assert.ok(Math.abs(quantile([0, 10, 20], 0.7).value - 14) < 1e-12);
});

Deno.test("rpo: soft weights and their gradient (tau not detached) match finite differences", () => {
  const L = [0.9, 0.2, 0.55, 1.3, 0.4];
  const { objective, coef } = rpo(L, 0.5, 0.5);
  const h = 1e-6;
  L.forEach((_, i) => {
    const up = [...L], dn = [...L];
    up[i] += h;
    dn[i] -= h;
    const fd = (rpo(up, 0.5, 0.5).objective - rpo(dn, 0.5, 0.5).objective) / (2 * h);
    assert.ok(Math.abs(fd - coef[i]) < 1e-6, `dL${i}: ${coef[i]} vs ${fd}`);
  });
  assert.ok(objective > 0 && objective < L.reduce((a, b) => a + b));
});

Deno.test("rpo: gamma <= 0 is the hard mask [L > tau] with a detached mask", () => {
  const r = rpo([1, 2, 3, 4], 0.5, 0);
  assert.deepEqual(Array.from(r.coef), [0, 0, 1, 1]);
  assert.equal(r.objective, 7);
});

Deno.test("schedule: linear warm-up from 0, cosine to 0", () => {
  const total = 100, w = warmupSteps(total, 0.05);
  assert.equal(w, 5);
  assert.equal(lrFactor(0, total, w), 0);
  assert.equal(lrFactor(4, total, w), 0.8);
  assert.equal(lrFactor(5, total, w), 1);
  assert.ok(Math.abs(lrFactor(52.5, total, w) - 0.5) < 1e-12);
  assert.ok(lrFactor(100, total, w) < 1e-12);
});
