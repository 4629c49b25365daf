/**
 * Meta-training epochs and evaluations on webgpu against wasm, in one process, on a
 * PRISM-size store (1000 users, H=4096; bench/_setup.ts timingStore) with the release's
 * settings. Runs only where a hardware WebGPU adapter exists (a software adapter's
 * timings mean nothing); bench/gpu_check.ts is the fuller one-shot check with round-trip
 * counts. Measured on an NVIDIA H200 by gpu_check: epoch 2.0x and evaluation 12x faster
 * on webgpu (README, "webgpu training on a GPU").
 */
import { hasHardwareGpu, initBackend } from "../lib/backend.ts";
import { evaluate } from "../lib/eval/evaluate.ts";
import { residentStore } from "../lib/model/project.ts";
import { initParams } from "../lib/model/params.ts";
import { preset } from "../lib/presets.ts";
import { prepareTasks } from "../lib/run/run.ts";
import { kspaceGpuReady } from "../lib/train/kspace_gpu.ts";
import { setEpochKernel } from "../lib/train/device.ts";
import { initialState, makeTrainer, trainEpoch } from "../lib/train/meta.ts";
import { timingStore } from "./_setup.ts";

const hardware = await hasHardwareGpu();
const store = timingStore(hardware ? 1000 : 10, hardware ? 4096 : 16);
const config = { ...preset("prism"), data: store.prefix };
const { seen, unseen } = prepareTasks(store, config);
const all = [...seen, ...unseen];
const trainer = makeTrainer(seen, store.dim, config.tasksPerBatch);
const start = initParams(store.dim, { seed: 42 });
const states = {
  wasm: initialState(structuredClone(start)),
  webgpu: initialState(structuredClone(start)),
  "webgpu, steps through tfjs": initialState(structuredClone(start)),
};
const evalOpts = { innerLr: config.innerLr, innerSteps: config.evalInnerEpochs };
if (hardware) {
  // the one-off set-up (the store's upload, the kernels' first compile) is not what is timed
  await initBackend("webgpu");
  await residentStore(store.embeddings, store.dim);
  await kspaceGpuReady();
}

// webgpu's epoch as one command buffer (the default), and with its steps sent through tfjs one by one
for (const variant of ["wasm", "webgpu", "webgpu, steps through tfjs"] as const) {
  const backend = variant === "wasm" ? "wasm" : "webgpu";
  Deno.bench({
    name: `meta-training epoch, ${seen.length} seen users (${variant})`,
    group: "epoch",
    baseline: variant === "wasm",
    ignore: !hardware,
    n: 8,
    warmup: 2,
    fn: async () => {
      await initBackend(backend);
      setEpochKernel(variant !== "webgpu, steps through tfjs");
      try {
        await trainEpoch(states[variant], store.embeddings, trainer, config);
      } finally {
        setEpochKernel(true);
      }
    },
  });
}
for (const backend of ["wasm", "webgpu"] as const) {
  Deno.bench({
    name: `evaluation of all ${all.length} users (${backend})`,
    group: "evaluation",
    baseline: backend === "wasm",
    ignore: !hardware,
    n: 8,
    warmup: 2,
    fn: async () => {
      await initBackend(backend);
      await evaluate(states[backend].params, store.embeddings, all, evalOpts);
    },
  });
}
