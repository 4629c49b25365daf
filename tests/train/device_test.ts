import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../../lib/backend.ts";
import { initParams, type MrmParams, namedArrays } from "../../lib/model/params.ts";
import { releaseResidentRows, setResidentChunkBytes, setUploadMode } from "../../lib/model/project.ts";
import { preset, type TrainConfig } from "../../lib/presets.ts";
import { prepareTasks } from "../../lib/run/run.ts";
import { type EpochStats, initialState, makeTrainer, trainEpoch } from "../../lib/train/meta.ts";
import { initPersonal } from "../../lib/train/personal_init.ts";
import { KSPACE_GPU_LIMITS } from "../../lib/train/kspace_gpu.ts";
import { epochChecks, setEpochKernel, setFusedSteps } from "../../lib/train/device.ts";
import { epochGpuRuns } from "../../lib/train/epoch_gpu.ts";
import type { EmbeddingStore } from "../../lib/store/store.ts";
import { countReadbacks, gpuOneOffChecks, memStore, relErr } from "../helpers.ts";

const dim = 16;
const store = memStore(24, dim, 8);

/** Three epochs on one backend from the same start; the readbacks each epoch made. */
async function train(
  store: EmbeddingStore,
  backend: "wasm" | "webgpu",
  config: TrainConfig,
  start: MrmParams,
  chunkBytes?: number,
  step: "fused" | "fused through tfjs" | "fused, one-workgroup end" | "general" = "fused",
) {
  await initBackend(backend);
  setResidentChunkBytes(chunkBytes);
  setFusedSteps(step !== "general", step === "fused, one-workgroup end");
  setEpochKernel(step !== "fused through tfjs");
  // the epoch's data through queue.writeBuffer (as a large epoch's go): its values are
  // copied when uploaded, so they must be complete by then
  const upload = setUploadMode(step === "fused through tfjs" ? "write" : "auto");
  const { seen } = prepareTasks(store, config);
  const state = initialState(structuredClone(start));
  const trainer = makeTrainer(seen, dim, config.tasksPerBatch);
  if (backend === "webgpu") await gpuOneOffChecks(store.embeddings, dim);
  // count readbacks while the epochs run: tensors', and one per epoch run as one command buffer
  const runs0 = epochGpuRuns.count, checks0 = epochChecks.count;
  const stats: EpochStats[] = [];
  let { readbacks } = await countReadbacks(async () => {
    try {
      for (let e = 0; e < 3; e++) stats.push(await trainEpoch(state, store.embeddings, trainer, config));
    } finally {
      setFusedSteps(true);
      setEpochKernel(true);
      setUploadMode(upload);
      setResidentChunkBytes(undefined);
      releaseResidentRows();
    }
  });
  // the first epoch of each kind in the process is checked against the tfjs step (two
  // readbacks, one of them a one-step epoch): a one-off, not part of the count
  const checks = epochChecks.count - checks0;
  const epochKernels = epochGpuRuns.count - runs0 - checks;
  readbacks += epochKernels - checks;
  return {
    state,
    stats,
    seen: seen.length,
    readbacks,
    epochKernels,
    steps: 3 * Math.ceil(seen.length / config.tasksPerBatch),
  };
}

const bigStore = memStore(150, dim, 9);

// every step runs on the GPU, except steps of more users than the K-space kernel's one
// workgroup takes: those go through the host once per step
// (a model with a head, [3, 2], always takes the general GPU step)
const cases = [
  { method: "mrm", innerSteps: 1, users: 3, onGpu: true, hidden: [3] },
  { method: "mrm-p", innerSteps: 1, users: 3, onGpu: true, hidden: [3] },
  { method: "mrm", innerSteps: 3, users: 3, onGpu: true, hidden: [3] },
  { method: "mrm", innerSteps: 1, users: 3, onGpu: true, hidden: [3, 2] },
  { method: "mrm", innerSteps: 1, users: KSPACE_GPU_LIMITS.users + 1, onGpu: false, hidden: [3] },
] as const;

for (const { method, innerSteps, users, onGpu, hidden } of cases) {
  Deno.test(
    `${method} (layers ${hidden}), ${innerSteps} inner step(s), ${users} users a step, on webgpu: ${
      onGpu ? "no readback per step" : "one readback per step"
    }, the weights of the host path`,
    async () => {
      await initBackend("wasm");
      const config: TrainConfig = {
        ...preset("synthetic"),
        data: "mem",
        method,
        tasksPerBatch: users,
        metaLr: 0.01,
        trainInnerEpochs: innerSteps,
        innerLr: innerSteps > 1 ? 0.05 : preset("synthetic").innerLr,
      };
      const data = onGpu ? store : bigStore;
      const start = method === "mrm"
        ? initParams(dim, { hiddenSizes: [...hidden], seed: 4 })
        : await initPersonal(data.embeddings, dim, prepareTasks(data, config).seen, {
          k: 3,
          ridge: 1,
          shrink: 0.5,
          seed: 4,
        });
      const host = await train(data, "wasm", config, start);
      const gpu = await train(data, "webgpu", config, start);
      // the same weights: the store in chunks of 40 rows (as one over the binding limit is
      // kept; more chunks than the fused step reads, so the general step), in three chunks
      // (the fused step), and the general step on the whole store
      const chunked = await train(data, "webgpu", config, start, 40 * dim * 4);
      const three = await train(data, "webgpu", config, start, Math.ceil(data.n / 3) * dim * 4);
      const general = await train(data, "webgpu", config, start, undefined, "general");
      const oneGroup = await train(data, "webgpu", config, start, undefined, "fused, one-workgroup end");
      const tfjsSteps = await train(data, "webgpu", config, start, undefined, "fused through tfjs");
      await initBackend("wasm");
      for (
        const [label, other] of [
          ["40-row chunks", chunked],
          ["3 chunks", three],
          ["general step", general],
          ["one-workgroup end", oneGroup],
          ["fused steps through tfjs", tfjsSteps],
        ] as const
      ) {
        namedArrays(other.state.params).forEach(([name, x], i) =>
          assert.ok(relErr(x, namedArrays(gpu.state.params)[i][1]) < 1e-6, `${name}: ${label} vs whole`)
        );
        assert.equal(other.readbacks, gpu.readbacks);
      }
      // a fused one-layer model's epochs on the whole store or three chunks run as one
      // command buffer each (lib/train/epoch_gpu.ts); the other variants go through tfjs
      const fusedEpochs = onGpu && hidden.length === 1 ? 3 : 0;
      assert.equal(gpu.epochKernels, fusedEpochs);
      assert.equal(three.epochKernels, fusedEpochs);
      for (const other of [chunked, general, oneGroup, tfjsSteps]) assert.equal(other.epochKernels, 0);
      // one readback per epoch to bring the host state up to date (and, through the host, one per step)
      // (a full step of more users than the kernel takes goes through the host; the leftover step does not)
      const expected = 3 * (1 + (onGpu ? 0 : Math.floor(gpu.seen / users)));
      assert.equal(gpu.readbacks, expected, `${gpu.readbacks} readbacks for ${gpu.steps} steps`);
      assert.equal(gpu.state.step, host.state.step);
      assert.equal(gpu.state.adam.step, host.state.adam.step);
      // the epochs' losses come back with the state
      gpu.stats.forEach((s, e) => {
        assert.ok(Math.abs(s.metaLoss - host.stats[e].metaLoss) < 1e-5, `epoch ${e} meta-loss ${s.metaLoss}`);
        assert.ok(Math.abs(s.objective - host.stats[e].objective) < 1e-5, `epoch ${e} objective ${s.objective}`);
      });
      const a = namedArrays(host.state.params), b = namedArrays(gpu.state.params);
      a.forEach(([name, x], i) => {
        const moved = relErr(x, namedArrays(start)[i][1]);
        assert.ok(moved > 1e-3, `${name} moved (${moved})`);
        assert.ok(relErr(b[i][1], x) < 1e-4, `${name}: webgpu vs wasm rel err ${relErr(b[i][1], x)}`);
      });
      host.state.adam.m.forEach((m, i) => assert.ok(relErr(gpu.state.adam.m[i], m) < 1e-3, `adam m ${i}`));
    },
  );
}

Deno.test("webgpu: an epoch whose command buffer the GPU rejects is said once and run through tfjs instead, with the same weights", async () => {
  const config: TrainConfig = { ...preset("synthetic"), data: "mem", tasksPerBatch: 3, metaLr: 0.01 };
  const start = initParams(dim, { hiddenSizes: [3], seed: 8 });
  const fine = await train(store, "webgpu", config, start);
  assert.equal(fine.epochKernels, 3);
  await initBackend("webgpu");
  // deno-lint-ignore no-explicit-any
  const device = (tf.backend() as any).device;
  const create = device.createBuffer.bind(device);
  // the epoch's own buffers (labelled "mrm epoch ...") are refused: a validation error
  device.createBuffer = (d: GPUBufferDescriptor) =>
    create(d.label?.startsWith("mrm epoch") ? { ...d, size: device.limits.maxBufferSize + 1024 } : d);
  const said: string[] = [];
  const error = console.error;
  console.error = (...a: unknown[]) => said.push(a.join(" "));
  try {
    const refused = await train(store, "webgpu", config, start);
    assert.equal(refused.epochKernels, 0);
    assert.equal(said.length, 1);
    assert.match(said[0], /the epoch's GPU work failed: .*; epochs run through tfjs step by step instead/);
    assert.equal(refused.state.adam.step, fine.state.adam.step);
    namedArrays(refused.state.params).forEach(([name, x], i) =>
      assert.ok(relErr(x, namedArrays(fine.state.params)[i][1]) < 1e-6, `${name}: through tfjs vs one command buffer`)
    );
  } finally {
    device.createBuffer = create;
    console.error = error;
    setEpochKernel(true);
    await initBackend("wasm");
  }
});
