import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../../lib/backend.ts";
import { evaluate } from "../../lib/eval/evaluate.ts";
import { initParams, type MrmParams } from "../../lib/model/params.ts";
import {
  projectAll,
  releaseResidentRows,
  residentStore,
  setResidentBudget,
  setResidentChunkBytes,
} from "../../lib/model/project.ts";
import { preset, type TrainConfig } from "../../lib/presets.ts";
import { prepareTasks } from "../../lib/run/run.ts";
import { setEpochKernel, setFusedSteps } from "../../lib/train/device.ts";
import { epochGpuRuns } from "../../lib/train/epoch_gpu.ts";
import { initialState, makeTrainer, trainEpoch } from "../../lib/train/meta.ts";
import { countReadbacks, memStore, relErr } from "../helpers.ts";

// a store of about 1,200 rows in chunks of 40; steps of 3 users need about 150 rows each
const dim = 16, chunk = 40 * dim * 4;
const store = memStore(24, dim, 8);
const config: TrainConfig = { ...preset("synthetic"), data: "mem", tasksPerBatch: 3, metaLr: 0.01, valHoldout: 0.2 };
const { seen, unseen } = prepareTasks(store, config);

/** Three epochs from `start` on the backend in use; the weights. */
async function train(start: MrmParams): Promise<Float32Array> {
  const state = initialState(structuredClone(start));
  const trainer = makeTrainer(seen, dim, config.tasksPerBatch);
  for (let e = 0; e < 3; e++) await trainEpoch(state, store.embeddings, trainer, config);
  return state.params.layers[0].weight;
}

/** Runs `f` with console.error collected. */
async function quietly<T>(f: () => Promise<T>): Promise<{ value: T; said: string[] }> {
  const said: string[] = [], error = console.error;
  console.error = (...a: unknown[]) => said.push(a.join(" "));
  try {
    return { value: await f(), said };
  } finally {
    console.error = error;
  }
}

Deno.test("webgpu: a store over the budget keeps whole chunks on the GPU; the other rows go up as steps need them, with wasm's weights", async () => {
  const start = initParams(dim, { hiddenSizes: [2], seed: 3 });
  await initBackend("wasm");
  const host = await train(start);
  await initBackend("webgpu");
  // chunks of 600 rows, 1.5 chunks' worth of budget: one chunk (about half the store) kept
  const big = 600 * dim * 4;
  setResidentChunkBytes(big);
  setResidentBudget(1.5 * big);
  try {
    const { value: resident, said } = await quietly(() => residentStore(store.embeddings, dim));
    assert.equal(resident!.kept, 600);
    assert.equal(resident!.total, store.n);
    assert.equal(resident!.chunks.length, 1);
    assert.equal(said.length, 1);
    assert.match(said[0], /\(600 of \d+ rows\) kept on the GPU \(--gpu_store_gib .*\); the other rows go up/);
    // the epoch as command buffers, one per run of steps whose rows off the GPU fit 300
    // rows; the same steps through tfjs, each with its rows uploaded; the general step
    for (const step of ["epoch kernel", "fused through tfjs", "general"]) {
      setFusedSteps(step !== "general");
      setEpochKernel(step === "epoch kernel");
      const runs = epochGpuRuns.count;
      const { value: gpu, said } = await quietly(() => train(start));
      assert.deepEqual(said, [], "said once per store");
      assert.equal(epochGpuRuns.count - runs >= 3, step === "epoch kernel", `${step}: epochs as command buffers`);
      assert.ok(relErr(gpu, host) < 1e-4, `${step}, part of the store on the GPU vs wasm: ${relErr(gpu, host)}`);
    }
  } finally {
    setFusedSteps(true);
    setEpochKernel(true);
    setResidentBudget(undefined);
    setResidentChunkBytes(undefined);
    releaseResidentRows();
    await initBackend("wasm");
  }
});

Deno.test("webgpu: evaluation with part of the store on the GPU goes in groups and gives the whole store's counts", async () => {
  const users = [...seen, ...unseen];
  const opts = { innerLr: 0.1, innerSteps: 3 };
  const params = initParams(dim, { hiddenSizes: [3], seed: 6 });
  await initBackend("webgpu");
  setResidentChunkBytes(chunk);
  try {
    const whole = await evaluate(params, store.embeddings, users, opts);
    setResidentBudget(2 * chunk);
    const { value: part, readbacks } = await countReadbacks(async () =>
      (await quietly(() => evaluate(params, store.embeddings, users, opts))).value
    );
    assert.deepEqual(part, whole);
    // groups of users whose rows off the GPU fit a chunk (40 rows): about one user each,
    // less the kernel check's one readback
    assert.ok(readbacks > 10, `${readbacks} readbacks`);
    // and the projection of every row: the kept rows from the GPU, the rest uploaded
    const ours = await projectAll(store.embeddings, dim, params.layers[0]);
    await initBackend("wasm");
    const theirs = await projectAll(store.embeddings, dim, params.layers[0]);
    assert.ok(relErr(ours, theirs) < 1e-5, `projection: ${relErr(ours, theirs)}`);
  } finally {
    setResidentBudget(undefined);
    setResidentChunkBytes(undefined);
    releaseResidentRows();
    await initBackend("wasm");
  }
});

Deno.test("webgpu: where the GPU refuses the whole store, its chunks go up one by one and all it takes but one are kept", async () => {
  const store = memStore(24, dim, 9);
  await initBackend("webgpu");
  setResidentChunkBytes(chunk);
  // deno-lint-ignore no-explicit-any
  const device = (tf.backend() as any).device;
  const create = device.createBuffer.bind(device);
  // a GPU with room for 3.5 chunks: a buffer past that is refused (a validation error here,
  // as an out-of-memory one would be); destroyed buffers give their room back
  let live = 0, tries = 0;
  device.createBuffer = (d: GPUBufferDescriptor) => {
    tries++;
    if (live + d.size > 3.5 * chunk) return create({ ...d, size: device.limits.maxBufferSize + 1024 });
    live += d.size;
    const b = create(d), destroy = b.destroy.bind(b);
    b.destroy = () => {
      live -= d.size;
      destroy();
    };
    return b;
  };
  try {
    const { value: resident, said } = await quietly(() => residentStore(store.embeddings, dim));
    device.createBuffer = create;
    // the whole store tried (every chunk), then 3 taken and the 4th refused, one freed
    assert.equal(tries, Math.ceil(store.n / 40) + 4);
    assert.equal(resident!.kept, 80);
    assert.equal(live, 2 * chunk);
    assert.equal(said.length, 2);
    assert.match(said[0], /could not be kept on the GPU/);
    assert.match(said[1], /\(80 of \d+ rows\) kept on the GPU; the other rows go up/);
    // the same store again: kept as it is, not tried again, not said again
    const again = await quietly(() => residentStore(store.embeddings, dim));
    assert.equal(again.value, resident);
    assert.deepEqual(again.said, []);
  } finally {
    device.createBuffer = create;
    setResidentChunkBytes(undefined);
    releaseResidentRows();
    await initBackend("wasm");
  }
});
