/**
 * Our WGSL forward pass against transformers (the same fixtures as hf_test.ts), on the
 * software WebGPU adapter. The shaders widen bf16/f16 weights with core WGSL, so what
 * runs here is what runs on a GPU; only the GEMM tile may differ there (the engine times
 * candidates and keeps only those that reproduce this default tile's products).
 */
import assert from "node:assert/strict";
import { WebGpuEngine } from "../../lib/encoder/webgpu/engine.ts";
import { GEMM_TILE } from "../../lib/encoder/webgpu/shaders.ts";
import { readAll, writeSafetensors } from "../../lib/store/safetensors.ts";
import { RewardEncoder } from "../../lib/encoder/encoder.ts";
import { tempDir } from "../helpers.ts";

const FIX = new URL("../fixtures/hf/", import.meta.url).pathname;
const expected = JSON.parse(await Deno.readTextFile(`${FIX}expected.json`));
type Ref = { hidden: number[]; score: number };

function errors(rows: Float32Array, scores: Float32Array, refs: Ref[], H: number) {
  let hidden = 0, score = 0;
  refs.forEach((r, i) => {
    const scale = Math.max(...r.hidden.map(Math.abs));
    r.hidden.forEach((v, j) => (hidden = Math.max(hidden, Math.abs(rows[i * H + j] - v) / scale)));
    score = Math.max(score, Math.abs(scores[i] - r.score) / Math.max(1, Math.abs(r.score)));
  });
  return { hidden, score };
}

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

Deno.test("WGSL engine reads f16 checkpoints too (weights re-saved as f16)", async () => {
  await using t = await tempDir();
  const m = expected.models["tiny-llama"];
  for (const dtype of ["F16"] as const) {
    const dir = `${t.dir}/${dtype}`;
    await Deno.mkdir(dir);
    await Deno.copyFile(`${FIX}tiny-llama/config.json`, `${dir}/config.json`);
    const index = JSON.parse(await Deno.readTextFile(`${FIX}tiny-llama/model.safetensors.index.json`));
    for (const shard of new Set(Object.values(index.weight_map) as string[])) {
      const { tensors } = await readAll(`${FIX}tiny-llama/${shard}`);
      await writeSafetensors(`${dir}/${shard}`, tensors, { dtype });
    }
    await Deno.copyFile(`${FIX}tiny-llama/model.safetensors.index.json`, `${dir}/model.safetensors.index.json`);
    const engine = await WebGpuEngine.load(dir, { tile: GEMM_TILE });
    try {
      const out = await engine.run(m.sequences.slice(0, 4));
      const e = errors(out.rows, out.logits!, m.float64.slice(0, 4), engine.spec.hidden);
      // bf16 -> f16 is exact in f16's normal range (a few subnormal weights round): same tolerance
      assert.ok(e.hidden < 1e-4 && e.score < 1e-4, `${dtype}: ${JSON.stringify(e)}`);
    } finally {
      await engine.dispose();
    }
  }
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
