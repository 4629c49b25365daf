import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../../lib/backend.ts";
import { generateSynthetic } from "../../lib/data/synthetic.ts";
import { initParams, type MrmParams, namedArrays } from "../../lib/model/params.ts";
import { releaseResidentRows, setResidentChunkBytes } from "../../lib/model/project.ts";
import { preset, type TrainConfig } from "../../lib/presets.ts";
import { prepareTasks } from "../../lib/run/run.ts";
import { initialState, makeTrainer, trainEpoch } from "../../lib/train/meta.ts";
import { initPersonal } from "../../lib/train/personal_init.ts";
import { relErr } from "../helpers.ts";

const dim = 16;
const g = generateSynthetic({ preset: "prism", users: 24, dim, seed: 8 });
const store = { prefix: "mem", embeddings: g.embeddings, n: g.embeddings.length / dim, dim, meta: g.meta, info: {} };

/** Three epochs on one backend from the same start; the readbacks each epoch made. */
async function train(backend: "wasm" | "webgpu", config: TrainConfig, start: MrmParams, chunkBytes?: number) {
  await initBackend(backend);
  setResidentChunkBytes(chunkBytes);
  const { seen } = prepareTasks(store, config);
  const state = initialState(structuredClone(start));
  const trainer = makeTrainer(seen, dim, config.tasksPerBatch);
  // count tensor readbacks while the epochs run
  // deno-lint-ignore no-explicit-any
  const proto = tf.Tensor.prototype as any;
  const orig = proto.data;
  let readbacks = 0;
  proto.data = function (this: unknown, ...a: unknown[]) {
    readbacks++;
    return orig.apply(this, a);
  };
  try {
    for (let e = 0; e < 3; e++) await trainEpoch(state, store.embeddings, trainer, config);
  } finally {
    proto.data = orig;
    setResidentChunkBytes(undefined);
    releaseResidentRows();
  }
  return { state, readbacks, steps: 3 * Math.ceil(seen.length / config.tasksPerBatch) };
}

for (const method of ["mrm", "mrm-p"] as const) {
  Deno.test(`${method} on webgpu: parameters and Adam on the GPU, one readback per step, the weights of the host path`, async () => {
    await initBackend("wasm");
    const config: TrainConfig = { ...preset("synthetic"), data: "mem", method, tasksPerBatch: 3, metaLr: 0.01 };
    const start = method === "mrm"
      ? initParams(dim, { hiddenSizes: [3], seed: 4 })
      : await initPersonal(store.embeddings, dim, prepareTasks(store, config).seen, {
        k: 3,
        ridge: 1,
        shrink: 0.5,
        seed: 4,
      });
    const host = await train("wasm", config, start);
    const gpu = await train("webgpu", config, start);
    // the store in chunks of 40 rows (as one over the binding limit is kept) gives the same weights
    const chunked = await train("webgpu", config, start, 40 * dim * 4);
    await initBackend("wasm");
    namedArrays(chunked.state.params).forEach(([name, x], i) =>
      assert.ok(relErr(x, namedArrays(gpu.state.params)[i][1]) < 1e-6, `${name}: chunked vs whole`)
    );
    assert.equal(chunked.readbacks, gpu.readbacks);
    // one readback per step, plus one per epoch to bring the host state up to date
    assert.equal(gpu.readbacks, gpu.steps + 3, `${gpu.readbacks} readbacks for ${gpu.steps} steps`);
    assert.equal(gpu.state.step, host.state.step);
    assert.equal(gpu.state.adam.step, host.state.adam.step);
    const a = namedArrays(host.state.params), b = namedArrays(gpu.state.params);
    a.forEach(([name, x], i) => {
      const moved = relErr(x, namedArrays(start)[i][1]);
      assert.ok(moved > 1e-3, `${name} moved (${moved})`);
      assert.ok(relErr(b[i][1], x) < 1e-4, `${name}: webgpu vs wasm rel err ${relErr(b[i][1], x)}`);
    });
    host.state.adam.m.forEach((m, i) => assert.ok(relErr(gpu.state.adam.m[i], m) < 1e-3, `adam m ${i}`));
  });
}
