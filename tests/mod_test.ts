/** The README's library example, run as written (with a tiny trained checkpoint). */
import assert from "node:assert/strict";
import { softmax } from "../lib/model/kspace.ts";
import {
  adaptUser,
  initBackend,
  loadCheckpoint,
  loadStore,
  preset,
  runTraining,
  scorePairs,
  writeSynthetic,
} from "../mod.ts";
import { tempDir } from "./helpers.ts";

Deno.test("README example: load a checkpoint, adapt to one user, score new pairs", async () => {
  await initBackend("wasm");
  await using t = await tempDir();
  await writeSynthetic(`${t.dir}/s`, { preset: "prism", users: 60, dim: 16, seed: 9 });
  const store = await loadStore(`${t.dir}/s`);
  await runTraining(store, { ...preset("synthetic"), data: `${t.dir}/s`, epochs: 10 }, { outDir: `${t.dir}/run` });

  // --- README example starts here ---
  const { params } = await loadCheckpoint(`${t.dir}/run/best.safetensors`);
  const H = params.dim;
  const rows = (idx: number[]) => {
    const out = new Float32Array(idx.length * H);
    idx.forEach((r, i) => out.set(store.embeddings.subarray(r * H, (r + 1) * H), i * H));
    return out;
  };
  const pairs = store.meta["user_05"];
  const support = pairs.slice(0, 8), test = pairs.slice(8);
  const user = adaptUser(params, rows(support.map((p) => p.chosen_idx)), rows(support.map((p) => p.rejected_idx)), {
    innerLr: 5e-2,
    innerSteps: 5,
  });
  const scores = scorePairs(user, rows(test.map((p) => p.chosen_idx)), rows(test.map((p) => p.rejected_idx)));
  // --- end ---

  assert.equal(scores.chosen.length, test.length);
  assert.ok(
    user.weights.some((v, k) => Math.abs(v - softmax(params.sharedWeight)[k]) > 1e-12),
    "adaptation must move the user's weights",
  );
  scores.prefersChosen.forEach((p, i) => assert.equal(p, scores.chosen[i] > scores.rejected[i]));
  assert.throws(
    () => adaptUser(params, new Float32Array(H + 1), new Float32Array(H + 1)),
    /not a whole number of rows/,
  );
});
