/**
 * A one-shot check for a machine with a GPU (not a `deno bench` file): the WebGPU
 * adapter, backend selection, tfjs webgpu vs wasm agreement on an outer step, the
 * PRISM-size epoch/evaluation timed on both backends in the same process, and the
 * encoder's onnxruntime-web webgpu EP vs wasm. Prints plain lines.
 * Usage: deno run -A bench/gpu_check.ts (USERS=1000,10000 store sizes, OUT=DIR writes
 * gpu_check.json, SKIP_ENCODER=1 skips the encoder part). It counts the host round
 * trips of a meta-training step and of an evaluation: tensor readbacks (data/dataSync)
 * and uploads (on webgpu, values sent to GPU memory; on wasm, tensors made from host values).
 *
 * Measured 2026-11-26 on an NVIDIA H200 (16 cores): adapter found, `auto` chose webgpu
 * (before this check made wasm the default); PRISM-size epoch wasm 0.21 s vs webgpu
 * 13.5 s, evaluation 0.22 s vs 41 s, max weight difference 5.6e-9; encoder (tiny
 * model) wasm 156K/180K/125K vs webgpu 14K/96K/315K tokens/s at batch 1/8/32.
 */
import * as tf from "@tensorflow/tfjs-core";
import { hasHardwareGpu, initBackend } from "../lib/backend.ts";
import { evaluate } from "../lib/eval/evaluate.ts";
import { initParams } from "../lib/model/params.ts";
import { preset } from "../lib/presets.ts";
import { prepareTasks } from "../lib/run/run.ts";
import { initialState, makeTrainer, trainEpoch } from "../lib/train/meta.ts";
import { RewardEncoder } from "../lib/encoder/encoder.ts";
import { prismSizeStore } from "./_setup.ts";
import { writeTinyModel } from "../tests/fixtures/tiny_model.ts";

// deno-lint-ignore no-explicit-any
const gpu = (navigator as any).gpu;
const adapter = await gpu?.requestAdapter();
console.log(`adapter: ${adapter ? JSON.stringify(adapter.info) : "none"}; hardware GPU: ${await hasHardwareGpu()}`);
console.log(`auto backend: ${await initBackend("auto")} (hardware GPU: ${await hasHardwareGpu()})`);

/** Host round trips: tensor readbacks (data/dataSync) and uploads (backend writes), counted while a function runs. */
const trips = { readbacks: 0, uploads: 0, kernels: 0 };
// deno-lint-ignore no-explicit-any
const engine = tf.engine() as any;
const runKernel = engine.runKernel.bind(engine);
engine.runKernel = (...args: unknown[]) => {
  trips.kernels++;
  return runKernel(...args);
};
// deno-lint-ignore no-explicit-any
const proto = tf.Tensor.prototype as any;
for (const name of ["data", "dataSync"]) {
  const orig = proto[name];
  proto[name] = function (this: unknown, ...args: unknown[]) {
    trips.readbacks++;
    return orig.apply(this, args);
  };
}
function countUploads(): void {
  // webgpu: values sent to GPU memory (uploadToGPU; small tensors that tfjs computes on the
  // host never are); wasm/cpu: tensors created from host values (write)
  // deno-lint-ignore no-explicit-any
  const backend = tf.backend() as any;
  if (backend.__counted) return;
  const name = typeof backend.uploadToGPU === "function" ? "uploadToGPU" : "write";
  const orig = backend[name].bind(backend);
  backend[name] = (...args: unknown[]) => {
    // uploadToGPU returns at once for data already on the GPU; count only real transfers
    const data = name === "uploadToGPU" ? backend.tensorMap.get(args[0]) : undefined;
    if (name === "write" || (data?.resource == null && data?.values != null)) trips.uploads++;
    return orig(...args);
  };
  backend.__counted = true;
}

// PRISM size (1000 users, H=4096) and 10x that; USERS=1000,10000 by default
const report: Record<string, unknown>[] = [];
for (const users of (Deno.env.get("USERS") ?? "1000,10000").split(",").map(Number)) {
  const store = prismSizeStore(users);
  const config = { ...preset("prism"), data: store.prefix };
  const { seen, unseen } = prepareTasks(store, config);
  const all = [...seen, ...unseen];
  const trainer = makeTrainer(seen, store.dim, config.tasksPerBatch);
  const steps = Math.ceil(seen.length / config.tasksPerBatch);
  const gib = store.embeddings.byteLength / 2 ** 30;
  console.log(`store: ${users} users, ${store.n} rows x H=${store.dim} (${gib.toFixed(2)} GiB), ${steps} steps/epoch`);
  const results: Record<string, number[]> = {};
  for (const backend of ["wasm", "webgpu"] as const) {
    try {
      await initBackend(backend);
    } catch (e) {
      console.log(`${backend}: unavailable (${(e as Error).message})`);
      continue;
    }
    countUploads();
    const state = initialState(initParams(store.dim, { seed: 42 }));
    const times: number[] = [];
    let perStep = { readbacks: 0, uploads: 0, kernels: 0 };
    for (let e = 0; e < 3; e++) {
      const before = { ...trips }, t = performance.now();
      await trainEpoch(state, store.embeddings, trainer, config);
      times.push((performance.now() - t) / 1000);
      perStep = {
        readbacks: (trips.readbacks - before.readbacks) / steps,
        uploads: (trips.uploads - before.uploads) / steps,
        kernels: (trips.kernels - before.kernels) / steps,
      };
    }
    const evals: number[] = [];
    let acc = 0, evalTrips = { readbacks: 0, uploads: 0, kernels: 0 };
    for (let e = 0; e < 2; e++) {
      const before = { ...trips }, t = performance.now();
      acc =
        (await evaluate(state.params, store.embeddings, all, { innerLr: config.innerLr, innerSteps: 1 })).overall.mean;
      evals.push((performance.now() - t) / 1000);
      evalTrips = {
        readbacks: trips.readbacks - before.readbacks,
        uploads: trips.uploads - before.uploads,
        kernels: trips.kernels - before.kernels,
      };
    }
    results[backend] = Array.from(state.params.layers[0].weight.subarray(0, 64));
    console.log(
      `${backend} (${tf.getBackend()}): epochs ${times.map((x) => x.toFixed(3)).join(" ")} s; evaluations ${
        evals.map((x) => x.toFixed(3)).join(" ")
      } s; overall acc ${acc.toFixed(4)}; per step ${perStep.readbacks.toFixed(2)} readbacks, ${
        perStep.uploads.toFixed(2)
      } uploads, ${
        perStep.kernels.toFixed(1)
      } tfjs kernels; per evaluation ${evalTrips.readbacks} readbacks, ${evalTrips.uploads} uploads, ${evalTrips.kernels} kernels`,
    );
    report.push({ users, backend, gib, steps, epochs: times, evaluations: evals, acc, perStep, evalTrips });
  }
  if (results.wasm && results.webgpu) {
    const d = results.wasm.reduce((m, v, i) => Math.max(m, Math.abs(v - results.webgpu[i])), 0);
    console.log(`max |weight difference| wasm vs webgpu after 3 epochs: ${d.toExponential(2)}`);
  }
  // let the store go before the next size is built
  await initBackend("wasm");
}
const out = Deno.env.get("OUT");
if (out) await Deno.writeTextFile(`${out}/gpu_check.json`, JSON.stringify(report, null, 2) + "\n");
if (Deno.env.get("SKIP_ENCODER")) Deno.exit(0);
const dir = await Deno.makeTempDir();
await writeTinyModel(dir);
const convs = Array.from(
  { length: 64 },
  (
    _,
    i,
  ) => [{ role: "user" as const, content: `post ${i} `.repeat(10 + (i % 30)) }, {
    role: "assistant" as const,
    content: `summary ${i}`,
  }],
);
for (const device of ["wasm", "webgpu"] as const) {
  for (const batchSize of [1, 8, 32]) {
    try {
      const enc = await RewardEncoder.load(dir, { device, batchSize });
      await enc.encode(convs.slice(0, 8));
      const t = performance.now();
      const r = await enc.encode(convs);
      console.log(
        `encoder ${device} batch ${batchSize}: ${(r.tokens / ((performance.now() - t) / 1000)).toFixed(0)} tokens/s`,
      );
    } catch (e) {
      console.log(`encoder ${device} batch ${batchSize}: failed (${(e as Error).message.slice(0, 200)})`);
    }
  }
}
