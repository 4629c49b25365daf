import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../../lib/backend.ts";
import {
  releaseResidentRows,
  residentRows,
  residentStore,
  setResidentChunkBytes,
  setUploadMode,
  uploadInt32,
} from "../../lib/model/project.ts";
import { projectPairsGpu, verifyPairsGpu } from "../../lib/model/pairs_gpu.ts";
import { initParams } from "../../lib/model/params.ts";
import { preset, type TrainConfig } from "../../lib/presets.ts";
import { prepareTasks } from "../../lib/run/run.ts";
import { initialState, makeTrainer, trainEpoch } from "../../lib/train/meta.ts";
import { memStore, relErr } from "../helpers.ts";

Deno.test("webgpu: the store goes up by queue.writeBuffer into chunks holding exactly its rows; small int32 uploads by either path", async () => {
  await initBackend("webgpu");
  try {
    const dim = 24, rows = 37;
    const x = Float32Array.from({ length: rows * dim }, (_, i) => Math.sin(i) * 3);
    for (const cap of [undefined, 5 * dim * 4]) {
      setResidentChunkBytes(cap);
      const store = residentRows(x, dim)!;
      await store.ready;
      assert.equal(store.chunks.length, cap ? Math.ceil(rows / 5) : 1);
      const back = await tf.concat(store.chunks, 0).data();
      assert.deepEqual(Array.from(back), Array.from(x));
      // the pair kernel reads every chunk as tfjs's gather does
      assert.equal(await verifyPairsGpu(store), undefined);
      // and gives 0.01 W1 (x_c - x_r) for pairs across chunks
      const w = Float32Array.from({ length: 2 * dim }, (_, i) => (i % 5) - 2);
      const pairs = [[0, 36], [12, 3], [35, 20]];
      const packed = tf.tensor1d(Int32Array.from([...pairs.map((p) => p[0]), ...pairs.map((p) => p[1])]), "int32");
      const yd = await projectPairsGpu(store, packed, 0, 3, tf.tensor1d(w), 0, 2).data();
      pairs.forEach(([c, r], p) => {
        for (let j = 0; j < 2; j++) {
          let want = 0;
          for (let h = 0; h < dim; h++) want += w[j * dim + h] * (x[c * dim + h] - x[r * dim + h]);
          assert.ok(Math.abs(yd[p * 2 + j] - 0.01 * want) < 1e-5, `pair ${p}, output ${j}`);
        }
      });
      releaseResidentRows();
    }
    // both paths, and "auto" on either side of its switch
    for (const length of [1500, 20000]) {
      const ints = Int32Array.from({ length }, (_, i) => i * 7 - 3000);
      for (const mode of ["tfjs", "write", "auto"] as const) {
        const was = setUploadMode(mode);
        const t = uploadInt32(ints);
        assert.deepEqual(Array.from(await t.data()), Array.from(ints), `${mode}, ${length} values`);
        t.dispose();
        setUploadMode(was);
      }
    }
  } finally {
    setResidentChunkBytes(undefined);
    releaseResidentRows();
    await initBackend("wasm");
  }
});

Deno.test("webgpu: a store the GPU refuses is said once and trained step by step instead, with the same result", async () => {
  const store = memStore(16, 8, 3);
  const config: TrainConfig = { ...preset("synthetic"), data: "mem", tasksPerBatch: 3, metaLr: 0.01 };
  const { seen } = prepareTasks(store, config);
  const start = initParams(8, { hiddenSizes: [2], seed: 2 });
  const run = async () => {
    const state = initialState(structuredClone(start));
    await trainEpoch(state, store.embeddings, makeTrainer(seen, 8, config.tasksPerBatch), config);
    return state.params.layers[0].weight;
  };
  await initBackend("wasm");
  const host = await run();
  await initBackend("webgpu");
  // deno-lint-ignore no-explicit-any
  const device = (tf.backend() as any).device;
  const create = device.createBuffer.bind(device);
  // every buffer the store asks for is over the device's limit: a validation error, as an
  // out-of-memory one would be
  device.createBuffer = (d: GPUBufferDescriptor) => create({ ...d, size: device.limits.maxBufferSize + 1024 });
  const said: string[] = [];
  const error = console.error;
  console.error = (...a: unknown[]) => said.push(a.join(" "));
  try {
    assert.equal(await residentStore(store.embeddings, 8), undefined);
  } finally {
    device.createBuffer = create;
    console.error = error;
  }
  assert.equal(said.length, 1);
  assert.match(said[0], /could not be kept on the GPU: .*each step uploads its rows instead/);
  // not tried again: the epoch goes through the non-resident path and agrees with wasm
  const gpu = await run();
  assert.ok(relErr(gpu, host) < 1e-4, `webgpu (rows per step) vs wasm: ${relErr(gpu, host)}`);
  await initBackend("wasm");
});
