import assert from "node:assert/strict";
import { initBackend } from "../../lib/backend.ts";
import { type EvalOptions, type EvalResult, evaluate } from "../../lib/eval/evaluate.ts";
import { initParams, type MrmParams } from "../../lib/model/params.ts";
import { releaseResidentRows, setResidentChunkBytes } from "../../lib/model/project.ts";
import { preset, type TrainConfig } from "../../lib/presets.ts";
import { prepareTasks } from "../../lib/run/run.ts";
import { initPersonal } from "../../lib/train/personal_init.ts";
import { countReadbacks, gpuOneOffChecks, memStore } from "../helpers.ts";

// 150 users (three workgroups of the evaluation kernel), H = 16
const dim = 16;
const store = memStore(150, dim, 11);
const config: TrainConfig = { ...preset("synthetic"), data: "mem", valHoldout: 0.2 };
const { seen, unseen } = prepareTasks(store, config);
const users = [...seen, ...unseen];

/** The evaluation on webgpu (store resident) and the readbacks it made, after the kernels' one-off check. */
async function onGpu(params: MrmParams, opts: EvalOptions, chunkBytes?: number) {
  await initBackend("webgpu");
  setResidentChunkBytes(chunkBytes);
  await gpuOneOffChecks(store.embeddings, dim);
  try {
    const { value: result, readbacks } = await countReadbacks(() => evaluate(params, store.embeddings, users, opts));
    return { result, readbacks };
  } finally {
    setResidentChunkBytes(undefined);
    releaseResidentRows();
    await initBackend("wasm");
  }
}

/** Test pairs ranked right, per user, and in all. */
function rightPairs(r: EvalResult): { per: number[]; total: number; pairs: number } {
  const per = r.users.map((u) => Math.round(u.accuracy * u.nTest));
  return { per, total: per.reduce((a, b) => a + b, 0), pairs: r.users.reduce((a, u) => a + u.nTest, 0) };
}

const cases: { name: string; opts: EvalOptions; params: () => Promise<MrmParams> }[] = [
  {
    name: "release MRM, 1 inner step of 1e-3",
    opts: { innerLr: 1e-3, innerSteps: 1 },
    params: () => Promise.resolve(initParams(dim, { hiddenSizes: [3], seed: 5 })),
  },
  {
    name: "MRM, 5 inner steps of 0.1, first 4 train pairs",
    opts: { innerLr: 0.1, innerSteps: 5, shots: 4 },
    params: () => Promise.resolve(initParams(dim, { hiddenSizes: [3], seed: 6 })),
  },
  {
    name: "MRM with a head (layers 4, 3)",
    opts: { innerLr: 0.05, innerSteps: 2 },
    params: () => Promise.resolve(initParams(dim, { hiddenSizes: [4, 3], seed: 7 })),
  },
  {
    name: "mrm-p (MAP fit)",
    opts: { innerLr: 1e-3, innerSteps: 1 },
    params: () => initPersonal(store.embeddings, dim, seen, { k: 3, ridge: 1, shrink: 0.5, seed: 4 }),
  },
];

for (const { name, opts, params } of cases) {
  Deno.test(`evaluation on webgpu, all users at once, one readback = the host evaluation: ${name}`, async () => {
    await initBackend("wasm");
    const p = await params();
    const host = await evaluate(p, store.embeddings, users, opts);
    const gpu = await onGpu(p, opts);
    // the store in chunks of 100 rows (as one over the binding limit is kept; more than
    // the pair kernel reads, so projected whole with tfjs ops), and in three chunks
    const chunked = await onGpu(p, opts, 100 * dim * 4);
    const three = await onGpu(p, opts, Math.ceil(store.n / 3) * dim * 4);
    for (const r of [gpu, chunked, three]) assert.equal(r.readbacks, 1);
    assert.deepEqual(chunked.result, gpu.result);
    assert.deepEqual(three.result, gpu.result);
    assert.equal(gpu.result.users.length, users.length);
    const h = rightPairs(host), d = rightPairs(gpu.result);
    assert.equal(d.pairs, h.pairs);
    // float32 head and adaptation instead of float64: a pair may flip only where its
    // margin is within rounding of zero, which is rare; allow 0.2% of the test pairs
    const flips = h.per.reduce((a, n, i) => a + Math.abs(n - d.per[i]), 0);
    assert.ok(flips <= Math.max(1, 0.002 * h.pairs), `${flips} of ${h.pairs} test pairs differ`);
    gpu.result.users.forEach((u, i) => {
      const hu = host.users[i];
      assert.equal(u.id, hu.id);
      assert.equal(u.group, hu.group);
      assert.equal(u.nTrain, hu.nTrain);
      assert.equal(u.valAccuracy === undefined, hu.valAccuracy === undefined, `${u.id}: validation pairs`);
      if (u.valAccuracy !== undefined) {
        // at most one validation pair the other way
        assert.ok(Math.abs(u.valAccuracy - hu.valAccuracy!) <= 1 / users[i].val.length + 1e-12, u.id);
      }
    });
    assert.ok(Math.abs(gpu.result.overall.mean - host.overall.mean) < 2e-3);
    // the evaluation is not trivially the same for every user
    assert.ok(new Set(host.users.map((u) => u.accuracy)).size > 5);
  });
}
