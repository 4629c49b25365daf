/**
 * A one-shot check for a machine with a GPU (not a `deno bench` file): the WebGPU
 * adapter, backend selection, tfjs webgpu vs wasm agreement, meta-training epochs and
 * evaluations timed on both backends in the same process, and the encoder's
 * onnxruntime-web webgpu EP vs wasm. Prints plain lines.
 * Usage: deno run -A bench/gpu_check.ts. Environment: USERS (store sizes in users,
 * 1000,10000 by default: PRISM size and 10x; H = 4096), METHODS (mrm, and mrm-p at the
 * first size; mrm,mrm-p by default), VARIANTS (a comma-separated subset of each size's
 * backends and variants: wasm, webgpu, webgpu:half-resident, ...), OUT=DIR writes gpu_check.json after every result,
 * SKIP_ENCODER=1 skips the encoder part. The stores come from bench/_setup.ts's
 * timingStore: the generator's users and pairs, rows filled with pseudo-random values.
 *
 * For each run it counts the host round trips of a meta-training step and of an
 * evaluation: tensor readbacks (data/dataSync), uploads (on webgpu, values sent to GPU
 * memory; on wasm, tensors made from host values) and tfjs kernels; and how long the
 * readbacks waited (on webgpu, the GPU work queued behind them). On webgpu it times the
 * set-up apart: the store's upload and the kernels' one-off check.
 *
 * Measured 2026-11-26 on an NVIDIA H200 (16 cores), before webgpu training was rebuilt
 * around the GPU: PRISM-size epoch wasm 0.21 s vs webgpu 13.5 s, evaluation 0.22 s vs
 * 41 s, max weight difference 5.6e-9; encoder (tiny model) wasm 156K/180K/125K vs webgpu
 * 14K/96K/315K tokens/s at batch 1/8/32. The README has the current table.
 */
import * as tf from "@tensorflow/tfjs-core";
import { hasHardwareGpu, initBackend } from "../lib/backend.ts";
import { evaluate } from "../lib/eval/evaluate.ts";
import { initParams, namedArrays } from "../lib/model/params.ts";
import { preset } from "../lib/presets.ts";
import { prepareTasks } from "../lib/run/run.ts";
import { initialState, makeTrainer, trainEpoch } from "../lib/train/meta.ts";
import { kspaceGpuReady } from "../lib/train/kspace_gpu.ts";
import { personalConfig } from "../lib/presets.ts";
import {
  releaseResidentRows,
  residentRows,
  setResidentBudget,
  setResidentChunkBytes,
  setUploadMode,
  uploadInt32,
} from "../lib/model/project.ts";
import { verifyPairsGpu } from "../lib/model/pairs_gpu.ts";
import { setEpochKernel, setFusedSteps } from "../lib/train/device.ts";
import { epochGpuRuns } from "../lib/train/epoch_gpu.ts";
import { RewardEncoder } from "../lib/encoder/encoder.ts";
import { timingStore } from "./_setup.ts";
import { writeTinyModel } from "../tests/fixtures/tiny_model.ts";

// deno-lint-ignore no-explicit-any
const gpu = (navigator as any).gpu;
const adapter = await gpu?.requestAdapter();
console.log(`adapter: ${adapter ? JSON.stringify(adapter.info) : "none"}; hardware GPU: ${await hasHardwareGpu()}`);
console.log(`auto backend: ${await initBackend("auto")} (hardware GPU: ${await hasHardwareGpu()})`);
if (adapter) {
  const l = adapter.limits;
  console.log(
    `adapter limits: ${l.maxStorageBuffersPerShaderStage} storage buffers per stage, binding ${l.maxStorageBufferBindingSize} B, buffer ${l.maxBufferSize} B`,
  );
}

/** Host round trips: tensor readbacks (data/dataSync) and uploads (backend writes), counted while a function runs. */
const trips = { readbacks: 0, uploads: 0, writes: 0, kernels: 0, dispatches: 0, waitMs: 0 };
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
    const t = performance.now();
    const out = orig.apply(this, args);
    if (!(out instanceof Promise)) {
      trips.waitMs += performance.now() - t;
      return out;
    }
    return out.then((v: unknown) => {
      trips.waitMs += performance.now() - t;
      return v;
    });
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
  if (name === "uploadToGPU") {
    // GPU dispatches: tfjs's kernels and this toolkit's WGSL programs alike
    const run = backend.runWebGPUProgram.bind(backend);
    backend.runWebGPUProgram = (...args: unknown[]) => {
      trips.dispatches++;
      return run(...args);
    };
    // queue.writeBuffer calls: tfjs's uniforms, the store's upload, uploadInt32's "write" mode
    const queue = backend.device.queue;
    const write = queue.writeBuffer.bind(queue);
    queue.writeBuffer = (...args: unknown[]) => {
      trips.writes++;
      return write(...args);
    };
  }
  backend.__counted = true;
}

// PRISM size (1000 users, H=4096) and 10x that; USERS=1000,10000 by default
const report: Record<string, unknown>[] = [];
const out = Deno.env.get("OUT");
const save = () => out && Deno.writeTextFileSync(`${out}/gpu_check.json`, JSON.stringify(report, null, 2) + "\n");
const sizes = (Deno.env.get("USERS") ?? "1000,10000").split(",").map(Number);
const methods = (Deno.env.get("METHODS") ?? "mrm,mrm-p").split(",");
const watched = new WeakSet<GPUDevice>();
for (const [si, users] of sizes.entries()) {
  let t0 = performance.now();
  const store = timingStore(users);
  const gib = store.embeddings.byteLength / 2 ** 30;
  console.log(
    `store: ${users} users, ${store.n} rows x H=${store.dim} (${gib.toFixed(2)} GiB), made in ${
      ((performance.now() - t0) / 1000).toFixed(1)
    } s`,
  );
  if (Deno.env.get("PROBE_CHUNKS")) {
    // whether the pair kernels read this store right with chunks of each size (verifyPairsGpu)
    await initBackend("webgpu");
    for (const cap of [undefined, 2 ** 30, 2 ** 28]) {
      setResidentChunkBytes(cap);
      const r = residentRows(store.embeddings, store.dim)!;
      await r.ready;
      const why = await verifyPairsGpu(r);
      console.log(`chunk cap ${cap ?? "none"}: ${r.chunks.length} chunks of ${r.rowsPerChunk} rows: ${why ?? "ok"}`);
    }
    setResidentChunkBytes(undefined);
    await initBackend("wasm");
  }
  for (const method of methods) {
    // mrm-p at the first size only
    if (method === "mrm-p" && si > 0) continue;
    const release = { ...preset("prism"), data: store.prefix };
    const config = method === "mrm-p" ? personalConfig(release) : release;
    const { seen, unseen } = prepareTasks(store, config);
    const all = [...seen, ...unseen];
    const trainer = makeTrainer(seen, store.dim, config.tasksPerBatch);
    const steps = Math.ceil(seen.length / config.tasksPerBatch);
    const start = initParams(store.dim, { hiddenSizes: config.hiddenSizes, seed: 42 });
    if (method === "mrm-p") start.priorLogPrecision = new Float32Array(config.hiddenSizes[0]);
    console.log(`${method}: ${seen.length} seen users, ${config.tasksPerBatch} a step, ${steps} steps/epoch`);
    const results: Record<string, number[]> = {};
    // webgpu variants up to PRISM size: the fused step ending in one workgroup instead of two
    // kernels; each step's data uploaded as it runs instead of the epoch's at once (through
    // tfjs, or through queue.writeBuffer); the general step. At every size: half the store
    // kept on the GPU (--gpu_store_gib), the other half uploaded as steps need it
    const variants = users <= 1000
      ? [
        "wasm",
        "webgpu",
        "webgpu:tfjs-steps",
        "webgpu:one-group-end",
        "webgpu:per-step-upload",
        "webgpu:write-upload",
        "webgpu:general",
        "webgpu:half-resident",
      ]
      : ["wasm", "webgpu", "webgpu:tfjs-steps", "webgpu:half-resident"];
    // VARIANTS (comma-separated) runs only those of the list
    const only = Deno.env.get("VARIANTS")?.split(",");
    if (only) variants.splice(0, variants.length, ...variants.filter((v) => only.includes(v)));
    for (const variant of variants) {
      const backend = variant.startsWith("webgpu") ? "webgpu" : "wasm";
      try {
        await initBackend(backend);
        // say at once if the GPU device is lost or reports an error nobody caught
        // deno-lint-ignore no-explicit-any
        const device = backend === "webgpu" ? (tf.backend() as any).device as GPUDevice : undefined;
        if (device && !watched.has(device)) {
          watched.add(device);
          device.lost.then((info) => console.log(`GPU device lost (${info.reason}): ${info.message}`));
          device.addEventListener("uncapturederror", (e) => {
            console.log(`GPU error nobody caught: ${(e as GPUUncapturedErrorEvent).error.message}`);
          });
        }
      } catch (e) {
        console.log(`${backend}: unavailable (${(e as Error).message})`);
        continue;
      }
      setUploadMode(variant === "webgpu:write-upload" ? "write" : "auto");
      setResidentBudget(variant === "webgpu:half-resident" ? store.embeddings.byteLength / 2 : undefined);
      setFusedSteps(
        variant !== "webgpu:general",
        variant === "webgpu:one-group-end",
        variant !== "webgpu:per-step-upload" && variant !== "webgpu:write-upload",
      );
      // "webgpu" and "webgpu:half-resident": an all-fused epoch is one command buffer (in
      // runs, with half the store) (lib/train/epoch_gpu.ts); the other variants send the
      // steps through tfjs
      setEpochKernel(variant === "webgpu" || variant === "webgpu:half-resident");
      countUploads();
      // webgpu's one-off set-up, timed apart: the store's upload (synced by a one-value
      // readback) and the kernels' check
      const setup = { upload: 0, kernels: 0 };
      if (backend === "webgpu") {
        t0 = performance.now();
        let resident;
        try {
          resident = residentRows(store.embeddings, store.dim);
        } catch (e) {
          console.log(`${variant}: skipped: ${(e as Error).message}`);
          continue;
        }
        // how the store went up: chunks, rows each, rows kept (of all)
        console.log(
          `${variant}: store on the GPU as ${
            resident?.chunks.length ?? "no"
          } chunks of ${resident?.rowsPerChunk} rows, ${resident?.kept} of ${resident?.total} rows kept`,
        );
        try {
          await resident?.ready;
          if (!resident?.chunks.length) throw new Error("no chunk kept");
          await tf.slice(resident.chunks.at(-1)!, [0, 0], [1, 1]).data();
        } catch (e) {
          console.log(`${variant}: skipped, the store's upload failed: ${(e as Error).message}`);
          continue;
        }
        setup.upload = (performance.now() - t0) / 1000;
        t0 = performance.now();
        await kspaceGpuReady();
        setup.kernels = (performance.now() - t0) / 1000;
      }
      // tensors alive after the set-up (the resident store's included): any more at the end are a leak
      const tensorsBefore = tf.memory().numTensors;
      const state = initialState(structuredClone(start));
      const times: number[] = [];
      let perStep = {
        readbacks: 0,
        uploads: 0,
        writes: 0,
        kernels: 0,
        dispatches: 0,
        waitMs: 0,
        encodeMs: 0,
        gpuMs: 0,
      };
      for (let e = 0; e < 3; e++) {
        const before = { ...trips }, t = performance.now(), runs = { ...epochGpuRuns };
        await trainEpoch(state, store.embeddings, trainer, config);
        times.push((performance.now() - t) / 1000);
        // an epoch run as one command buffer: one readback, four dispatches a step, and the
        // host time to build and submit it (which on a software adapter includes running it)
        const epochRuns = epochGpuRuns.count - runs.count;
        perStep = {
          readbacks: (trips.readbacks - before.readbacks + epochRuns) / steps,
          uploads: (trips.uploads - before.uploads) / steps,
          writes: (trips.writes - before.writes) / steps,
          kernels: (trips.kernels - before.kernels) / steps,
          dispatches: (trips.dispatches - before.dispatches) / steps + 4 * epochRuns,
          waitMs: (trips.waitMs - before.waitMs) / steps,
          encodeMs: (epochGpuRuns.encodeMs - runs.encodeMs) / steps,
          // the epoch kernel's passes timed on the GPU (timestamp queries), per step
          gpuMs: (epochGpuRuns.gpuMs - runs.gpuMs) / steps,
        };
      }
      const evals: number[] = [];
      let acc = 0, evalTrips = { readbacks: 0, uploads: 0, writes: 0, kernels: 0, dispatches: 0, waitMs: 0 };
      for (let e = 0; e < 3; e++) {
        const before = { ...trips }, t = performance.now();
        acc = (await evaluate(state.params, store.embeddings, all, { innerLr: config.innerLr, innerSteps: 1 }))
          .overall.mean;
        evals.push((performance.now() - t) / 1000);
        evalTrips = {
          readbacks: trips.readbacks - before.readbacks,
          uploads: trips.uploads - before.uploads,
          writes: trips.writes - before.writes,
          kernels: trips.kernels - before.kernels,
          dispatches: trips.dispatches - before.dispatches,
          waitMs: trips.waitMs - before.waitMs,
        };
      }
      // every trained array (the shared weight and mrm-p's prior included), one after another
      results[variant] = namedArrays(state.params).flatMap(([, a]) => Array.from(a));
      const leaked = tf.memory().numTensors - tensorsBefore;
      const f = (x: number, d = 1) => x.toFixed(d);
      console.log(
        `${method} ${variant} (${tf.getBackend()}): set-up upload ${f(setup.upload, 3)} s, kernels ${
          f(setup.kernels, 3)
        } s; epochs ${times.map((x) => f(x, 3)).join(" ")} s; evaluations ${
          evals.map((x) => f(x, 3)).join(" ")
        } s; acc ${f(acc, 4)}; per step: ${f(perStep.readbacks, 2)} readbacks (waited ${f(perStep.waitMs, 2)} ms), ${
          f(perStep.uploads, 2)
        } uploads, ${f(perStep.writes, 1)} buffer writes, ${f(perStep.kernels)} tfjs ops, ${
          f(perStep.dispatches)
        } GPU dispatches, ${f(perStep.encodeMs, 3)} ms host encoding and ${
          f(perStep.gpuMs, 3)
        } ms GPU (epoch kernel); per evaluation: ${evalTrips.readbacks} readbacks (waited ${
          f(evalTrips.waitMs)
        } ms), ${evalTrips.uploads} uploads, ${evalTrips.writes} writes, ${evalTrips.kernels} ops, ${evalTrips.dispatches} dispatches; tensors left ${leaked}`,
      );
      report.push({
        users,
        method,
        backend: variant,
        gib,
        rows: store.n,
        steps,
        setup,
        epochs: times,
        evaluations: evals,
        acc,
        perStep,
        evalTrips,
        tensorsLeft: leaked,
      });
      save();
    }
    // every webgpu variant against wasm, over all trained values
    for (const variant of Object.keys(results).filter((v) => v !== "wasm" && results.wasm)) {
      const d = results.wasm.reduce((m, v, i) => Math.max(m, Math.abs(v - results[variant][i])), 0);
      const scale = results.wasm.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      console.log(
        `${method}: max |weight difference| wasm vs ${variant} after 3 epochs: ${d.toExponential(2)} (values up to ${
          scale.toExponential(2)
        })`,
      );
      report.push({ users, method, variant, maxWeightDiff: d, weightScale: scale });
      save();
    }
    // let the store go before the next size is built
    await initBackend("wasm");
  }
  releaseResidentRows();
}
setUploadMode("auto");
setFusedSteps(true);
setEpochKernel(true);

// host time of the pieces a webgpu step is made of, 500 each, not waited on (one readback
// at the end): a small int32 upload by each path, a tfjs elementwise op on GPU tensors
try {
  await initBackend("webgpu");
  const costs: Record<string, number> = {};
  // 1200 values: tfjs computes ops on host tensors under 1000 values on the host
  const ints = new Int32Array(1200).map((_, i) => i);
  const base = tf.keep(tf.add(tf.zeros([1200], "int32"), 1));
  for (const mode of ["tfjs", "write", "op"] as const) {
    setUploadMode(mode === "op" ? "write" : mode);
    const kept: tf.Tensor[] = [];
    const t = performance.now();
    for (let i = 0; i < 500; i++) kept.push(mode === "op" ? tf.add(base, base) : tf.add(uploadInt32(ints), base));
    const waitStart = performance.now();
    await kept.at(-1)!.data();
    costs[mode] = (waitStart - t) / 500;
    costs[`${mode}+wait`] = (performance.now() - t) / 500;
    tf.dispose(kept);
  }
  setUploadMode("auto");
  console.log(`host ms per piece: ${JSON.stringify(costs)} (upload = one upload + one add; op = one add)`);
  report.push({ hostMsPerPiece: costs });
  save();
} catch (e) {
  console.log(`host costs: ${(e as Error).message}`);
}
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
