import assert from "node:assert/strict";
import { accuracyOf, evaluateProjected, groupStats } from "../../lib/eval/evaluate.ts";
import type { UserTask } from "../../lib/data/tasks.ts";
import { initParams } from "../../lib/model/params.ts";

Deno.test("groupStats: mean, median and the mean of the worst ceil(10%) users", () => {
  const acc = [0.9, 0.1, 0.5, 0.7, 0.3, 0.8, 0.6, 0.4, 0.2, 1.0, 0.0];
  const s = groupStats(acc);
  assert.equal(s.n, 11);
  assert.ok(Math.abs(s.mean - 0.5) < 1e-12);
  assert.equal(s.median, 0.5);
  assert.ok(Math.abs(s.worst10 - 0.05) < 1e-12, `worst two of 11: (0 + 0.1) / 2, got ${s.worst10}`);
  assert.equal(groupStats([0.25, 0.75]).median, 0.5);
});

Deno.test("accuracy: strictly positive margins count, ties are wrong", () => {
  const z = new Float64Array([1, 1, 0, 0, -1, -1, 2, -2]); // margins under equal weights: 1, 0, -1, 0
  assert.equal(accuracyOf([0, 0], z, 4), 0.25);
});

Deno.test("evaluation adapts each user on train pairs before scoring test pairs", () => {
  // one row per response; y (first-layer outputs) given directly, K = 2 identity head
  const params = initParams(3, { hiddenSizes: [2], seed: 1 });
  params.sharedWeight.set([0, 0]);
  // pairs where base 0 says chosen is better and base 1 says it is worse
  const y = new Float32Array([1, 0, 0, 0.5, /* test: */ 1, 0, 0, 0.9]);
  const task = (id: string): UserTask => ({
    id,
    group: "seen",
    index: 0,
    entries: [{ chosen_idx: 0, rejected_idx: 1 }, { chosen_idx: 2, rejected_idx: 3 }],
    train: [0],
    test: [1],
    val: [],
    chosen: Int32Array.from([0, 2]),
    rejected: Int32Array.from([1, 3]),
  });
  // margin with equal weights on the test pair: 0.5*1 - 0.5*0.9 > 0; the train pair
  // (z = [1, -0.5]) pushes weight to base 0, keeping it right after adaptation.
  const r = evaluateProjected(params, y, [task("a")], { innerLr: 0.5, innerSteps: 3 });
  assert.equal(r.users[0].accuracy, 1);
  assert.equal(r.seen.n, 1);
  assert.equal(r.unseen.n, 0);
  // with a flipped train signal, adaptation moves weight to base 1 and the test pair is lost
  const y2 = new Float32Array([0, 1, 0.5, 0, 1, 0, 0, 0.9]);
  const r2 = evaluateProjected(params, y2, [task("b")], { innerLr: 0.5, innerSteps: 3 });
  assert.equal(r2.users[0].accuracy, 0);
});

Deno.test("all-users evaluation on webgpu (store kept on the GPU, whole or in chunks; one readback) agrees with wasm", async () => {
  const { initBackend } = await import("../../lib/backend.ts");
  const { evaluate } = await import("../../lib/eval/evaluate.ts");
  const { gatherResident, projectAll, releaseResidentRows, residentRows, setResidentChunkBytes } = await import(
    "../../lib/model/project.ts"
  );
  const { prepareTasks } = await import("../../lib/run/run.ts");
  const { preset } = await import("../../lib/presets.ts");
  const { memStore } = await import("../helpers.ts");
  const store = memStore(30, 16, 5);
  const config = { ...preset("synthetic"), data: "mem" };
  const { seen, unseen } = prepareTasks(store, config);
  const params = initParams(16, { hiddenSizes: [3], seed: 2 });
  const opts = { innerLr: 0.05, innerSteps: 5 };
  const y: Record<string, Float32Array> = {}, acc: Record<string, number[]> = {};
  // webgpu with the store as one tensor, and split into chunks of 50 rows (as a store over the binding limit is)
  for (
    const [b, chunkBytes] of [["wasm", undefined], ["webgpu", undefined], ["webgpu-chunked", 50 * 16 * 4]] as const
  ) {
    await initBackend(b === "wasm" ? "wasm" : "webgpu");
    setResidentChunkBytes(chunkBytes);
    y[b] = await projectAll(store.embeddings, 16, params.layers[0]);
    acc[b] = (await evaluate(params, store.embeddings, [...seen, ...unseen], opts)).users.map((u) => u.accuracy);
    if (b === "webgpu-chunked") {
      const resident = residentRows(store.embeddings, 16)!;
      assert.ok(resident.chunks.length >= 3, `${resident.chunks.length} chunks`);
      // rows from every chunk, out of order and repeated, come back exactly
      const indices = Int32Array.from([store.n - 1, 0, 51, 50, 3, 149, 0, 100, store.n - 2]);
      const got = gatherResident(resident, indices);
      const values = await got.data();
      got.dispose();
      indices.forEach((row, i) =>
        assert.deepEqual(
          Array.from(values.slice(i * 16, i * 16 + 16)),
          Array.from(store.embeddings.slice(row * 16, row * 16 + 16)),
        )
      );
    }
  }
  setResidentChunkBytes(undefined);
  releaseResidentRows();
  await initBackend("wasm");
  for (const b of ["webgpu", "webgpu-chunked"]) {
    let d = 0;
    y.wasm.forEach((v, i) => (d = Math.max(d, Math.abs(v - y[b][i]))));
    assert.ok(d < 1e-5, `${b}: projection differs by ${d}`);
    assert.deepEqual(acc[b], acc.wasm);
  }
});
