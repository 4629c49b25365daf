/**
 * Our WGSL forward pass against transformers (the same fixtures as hf_test.ts), on the
 * software WebGPU adapter. The shaders widen bf16/f16 weights with core WGSL, so what
 * runs here is what runs on a GPU; only the GEMM tile may differ there (the engine times
 * candidates and keeps only those that reproduce this default tile's products). The
 * kernels alone: wgsl_gemm_test.ts and wgsl_kernels_test.ts.
 */
import assert from "node:assert/strict";
import { WebGpuEngine } from "../../lib/encoder/webgpu/engine.ts";
import { GEMM_TILE } from "../../lib/encoder/webgpu/shaders.ts";
import { RewardEncoder } from "../../lib/encoder/encoder.ts";
import { gpuAdapter } from "../../lib/encoder/device.ts";
import { hiddenErrors, tempDir } from "../helpers.ts";

const FIX = new URL("../fixtures/hf/", import.meta.url).pathname;
const expected = JSON.parse(await Deno.readTextFile(`${FIX}expected.json`));

const errors = hiddenErrors;

for (const model of ["tiny-llama", "tiny-qwen3"]) {
  Deno.test(`WGSL engine, ${model} (bf16 in GPU buffers): padded batch and batch 1 match transformers`, async () => {
    const engine = await WebGpuEngine.load(`${FIX}${model}`, { tile: GEMM_TILE });
    try {
      const m = expected.models[model];
      const H = engine.spec.hidden;
      const all = await engine.run(m.sequences);
      const e = errors(all.rows, all.logits!, m.float64, H);
      assert.ok(e.hidden < 1e-4 && e.score < 1e-4, `padded: ${JSON.stringify(e)}`);
      // one at a time, the two shortest (a one-token sequence included)
      for (const i of [0, 1]) {
        const one = await engine.run([m.sequences[i]]);
        const e1 = errors(one.rows, one.logits!, [m.float64[i]], H);
        assert.ok(e1.hidden < 1e-4 && e1.score < 1e-4, `sequence ${i}: ${JSON.stringify(e1)}`);
      }
    } finally {
      await engine.dispose();
    }
  });
}

Deno.test("f16 GEMM arithmetic asks for shader-f16: refused, naming it, on an adapter without it", async () => {
  const adapter = await navigator.gpu.requestAdapter();
  if (adapter?.features.has("shader-f16")) return; // a GPU that has it runs it (bench/hf_gpu_check.ts, wgsl+f16)
  await assert.rejects(
    () => WebGpuEngine.load(`${FIX}tiny-qwen3`, { gemmArith: "f16" }),
    /tiny-qwen3: f16 GEMM arithmetic needs an adapter with shader-f16, which this one lacks/,
  );
});

Deno.test("encoder picks the WGSL engine on webgpu for a Hugging Face folder; agrees with the ONNX engine on wasm", async () => {
  await using t = await tempDir();
  const dir = `${t.dir}/m`;
  await Deno.mkdir(dir);
  for (const e of Deno.readDirSync(`${FIX}tiny-qwen3`)) {
    await Deno.copyFile(`${FIX}tiny-qwen3/${e.name}`, `${dir}/${e.name}`);
  }
  const { writeTinyModel } = await import("../fixtures/tiny_model.ts");
  await writeTinyModel(`${t.dir}/tok`);
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) await Deno.copyFile(`${t.dir}/tok/${f}`, `${dir}/${f}`);
  const convs = [
    [{ role: "user" as const, content: "Summarize: the cat sat on the mat." }, {
      role: "assistant" as const,
      content: "A cat sat.",
    }],
    [{ role: "user" as const, content: "hi" }, { role: "assistant" as const, content: "hello there" }],
  ];
  const gpu = await RewardEncoder.load(dir, { device: "webgpu", precision: "f32" });
  const cpu = await RewardEncoder.load(dir, { device: "wasm" });
  try {
    assert.equal(gpu.engine.constructor.name, "WebGpuEngine");
    assert.equal(cpu.engine.constructor.name, "HfEngine");
    const [a, b] = [await gpu.encode(convs), await cpu.encode(convs)];
    let d = 0;
    a.embeddings.forEach((v, i) => (d = Math.max(d, Math.abs(v - b.embeddings[i]))));
    assert.ok(d < 1e-4, `max difference ${d}`);
    assert.ok(a.scoreCheck && a.scoreCheck.mismatches === 0);
  } finally {
    await gpu.dispose();
    await cpu.dispose();
  }
  // --precision f16 reaches the WGSL engine as f16 GEMM arithmetic: refused, naming the
  // feature, where the adapter lacks shader-f16; where it has it, the GEMMs run in f16
  const adapter = await navigator.gpu.requestAdapter();
  if (adapter?.features.has("shader-f16")) {
    const f16 = await RewardEncoder.load(dir, { device: "webgpu", precision: "f16" });
    try {
      assert.equal((f16.engine as WebGpuEngine).gemmArith, "f16");
    } finally {
      await f16.dispose();
    }
  } else {
    await assert.rejects(RewardEncoder.load(dir, { device: "webgpu", precision: "f16" }), /needs .*shader-f16/);
  }
  // other precisions keep f32 arithmetic there; auto takes f16 on a GPU with shader-f16 and
  // f32 elsewhere (this software adapter)
  const hw = await gpuAdapter();
  for (const [precision, want] of [["f16-weights", "f32"], ["auto", hw?.f16 ? "f16" : "f32"]] as const) {
    const e = await RewardEncoder.load(dir, { device: "webgpu", precision });
    try {
      assert.equal((e.engine as WebGpuEngine).gemmArith, want, `precision ${precision}`);
    } finally {
      await e.dispose();
    }
  }
});
