/**
 * Our WGSL forward pass against transformers (the same fixtures as hf_test.ts), on the
 * software WebGPU adapter. The shaders widen bf16/f16 weights with core WGSL, so what
 * runs here is what runs on a GPU; only the GEMM tile may differ there (the engine times
 * candidates and keeps only those that reproduce this default tile's products).
 */
import assert from "node:assert/strict";
import { WebGpuEngine } from "../../lib/encoder/webgpu/engine.ts";
import { GEMM_TILE, type WeightDtype, weightLoader } from "../../lib/encoder/webgpu/shaders.ts";
import { f16ToF32, f32ToF16 } from "../../lib/store/safetensors.ts";
import { RewardEncoder } from "../../lib/encoder/encoder.ts";
import { hiddenErrors, tempDir } from "../helpers.ts";

const FIX = new URL("../fixtures/hf/", import.meta.url).pathname;
const expected = JSON.parse(await Deno.readTextFile(`${FIX}expected.json`));
type Ref = { hidden: number[]; score: number };

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

Deno.test("weight loaders widen bf16, f16 and f32 exactly (as the GEMM, norm and rope kernels load them)", async () => {
  // deno-lint-ignore no-explicit-any
  const gpu: any = await (await (navigator as any).gpu.requestAdapter()).requestDevice();
  const values = Float32Array.from({ length: 64 }, (_, i) => (i - 31.5) * 0.37 * (i % 3 ? 1 : 1e-3));
  const bf16 = Uint16Array.from(new Uint32Array(values.buffer), (u) => u >>> 16);
  const f16 = new Uint16Array(64);
  f32ToF16(values, f16);
  const want: Record<WeightDtype, Float32Array> = {
    BF16: new Float32Array(Uint32Array.from(bf16, (h) => h << 16).buffer),
    F16: (() => {
      const o = new Float32Array(64);
      f16ToF32(f16, o);
      return o;
    })(),
    F32: values,
  };
  const raw: Record<WeightDtype, ArrayBufferView> = { BF16: bf16, F16: f16, F32: values };
  for (const dtype of ["BF16", "F16", "F32"] as WeightDtype[]) {
    const code = `
@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read_write> O: array<f32>;
${weightLoader("W", dtype)}
@compute @workgroup_size(16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  let v = W_4(lid.x * 4u);
  for (var j = 0u; j < 4u; j = j + 1u) { O[lid.x * 4u + j] = v[j]; O[64u + lid.x * 4u + j] = W_1(lid.x * 4u + j); }
}`;
    const pipeline = gpu.createComputePipeline({
      layout: "auto",
      compute: { module: gpu.createShaderModule({ code }), entryPoint: "main" },
    });
    const W = gpu.createBuffer({ size: raw[dtype].byteLength, usage: 0x80 | 0x8 });
    gpu.queue.writeBuffer(W, 0, raw[dtype]);
    const O = gpu.createBuffer({ size: 128 * 4, usage: 0x80 | 0x4 });
    const R = gpu.createBuffer({ size: 128 * 4, usage: 0x1 | 0x8 });
    const enc = gpu.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(
      0,
      gpu.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [W, O].map((buffer, binding) => ({ binding, resource: { buffer } })),
      }),
    );
    pass.dispatchWorkgroups(1);
    pass.end();
    enc.copyBufferToBuffer(O, 0, R, 0, 512);
    gpu.queue.submit([enc.finish()]);
    await R.mapAsync(1);
    const out = new Float32Array(R.getMappedRange().slice(0));
    R.unmap();
    assert.deepEqual(out.slice(0, 64), want[dtype], `${dtype} four at a time`);
    assert.deepEqual(out.slice(64), want[dtype], `${dtype} one at a time`);
  }
  gpu.destroy();
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
  const gpu = await RewardEncoder.load(dir, { device: "webgpu" });
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
});
