import assert from "node:assert/strict";
import { RewardEncoder } from "../../lib/encoder/encoder.ts";
import { loadChatTokenizer } from "../../lib/encoder/tokenizer.ts";
import { referenceForward, TINY, writeTinyModel } from "../fixtures/tiny_model.ts";
import { tempDir } from "../helpers.ts";
import type { Message } from "../../lib/data/pairs.ts";

const convs: Message[][] = [
  [{ role: "user", content: "What is the capital of France?" }, { role: "assistant", content: "Paris." }],
  [{ role: "user", content: "hi" }, { role: "assistant", content: "Hello there, how can I help you today?" }],
  [{ role: "user", content: "Summarize: the cat sat on the mat." }, { role: "assistant", content: "A cat sat." }, {
    role: "user",
    content: "Shorter?",
  }, { role: "assistant", content: "Cat sat." }],
  [{ role: "user", content: "EMPTY STRING" }, { role: "assistant", content: "EMPTY STRING" }],
  [{ role: "user", content: "Ünïcödé & emoji 🙂 ok?" }, { role: "assistant", content: "Yes — fine." }],
];

Deno.test("chat template + ByteLevel BPE tokenizer: template applied, ids round-trip the rendered text", async () => {
  await using t = await tempDir();
  await writeTinyModel(t.dir);
  const tok = await loadChatTokenizer(t.dir);
  const text = tok.render(convs[0]);
  assert.equal(
    text,
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nParis.<|eot_id|>",
  );
  const ids = tok.encode(convs[0]);
  assert.equal(ids[0], 256 + 6, "<|begin_of_text|> is one special token");
  assert.ok(ids.length > 20 && ids.length < text.length);
});

Deno.test("ONNX tiny decoder: last-token hidden state matches an independent float64 forward pass", async () => {
  await using t = await tempDir();
  const w = await writeTinyModel(t.dir);
  const enc = await RewardEncoder.load(t.dir, { device: "wasm", batchSize: 1 });
  const tok = await loadChatTokenizer(t.dir);
  const out = await enc.encode(convs);
  const H = TINY.hidden;
  convs.forEach((c, i) => {
    const ids = tok.encode(c);
    const ref = referenceForward(w, ids);
    const last = ref[ids.length - 1];
    for (let h = 0; h < H; h++) {
      assert.ok(
        Math.abs(out.embeddings[i * H + h] - last[h]) < 1e-4,
        `conv ${i} dim ${h}: ${out.embeddings[i * H + h]} vs ${last[h]}`,
      );
    }
    // the reward head applied to the embedding
    const s = last.reduce((a, v, k) => a + v * w.score[k], 0);
    assert.ok(Math.abs(out.scores![i] - s) < 1e-3);
  });
});

Deno.test("batched (padded, length-sorted) and one-at-a-time embeddings agree", async () => {
  await using t = await tempDir();
  await writeTinyModel(t.dir);
  const one = await (await RewardEncoder.load(t.dir, { device: "wasm", batchSize: 1 })).encode(convs);
  const many = await (await RewardEncoder.load(t.dir, { device: "wasm", batchSize: 4 })).encode(convs);
  assert.equal(many.tokens, one.tokens);
  one.embeddings.forEach((v, i) =>
    assert.ok(Math.abs(v - many.embeddings[i]) < 1e-5, `${i}: ${v} vs ${many.embeddings[i]}`)
  );
});

Deno.test("webgpu EP (software adapter) gives the same embeddings as wasm", async () => {
  await using t = await tempDir();
  await writeTinyModel(t.dir);
  const a = await (await RewardEncoder.load(t.dir, { device: "wasm", batchSize: 2 })).encode(convs.slice(0, 2));
  const gpu = await RewardEncoder.load(t.dir, { device: "webgpu", batchSize: 2 });
  assert.equal(gpu.device, "webgpu");
  const b = await gpu.encode(convs.slice(0, 2));
  a.embeddings.forEach((v, i) => assert.ok(Math.abs(v - b.embeddings[i]) < 1e-3, `${i}: ${v} vs ${b.embeddings[i]}`));
});

Deno.test("the model's own reward (logits) is checked against the head applied to the embedding", async () => {
  await using t = await tempDir();
  const w = await writeTinyModel(t.dir);
  const ok = await (await RewardEncoder.load(t.dir, { device: "wasm" })).encode(convs);
  assert.deepEqual({ checked: ok.scoreCheck!.checked, mismatches: ok.scoreCheck!.mismatches }, {
    checked: convs.length,
    mismatches: 0,
  });
  assert.ok(ok.scoreCheck!.maxAbsDiff < 1e-4);
  // a head that is not the model's: every reward disagrees
  const { writeSafetensors } = await import("../../lib/store/safetensors.ts");
  await writeSafetensors(`${t.dir}/score.safetensors`, {
    "score.weight": { data: w.score.map((v) => -v), shape: [1, TINY.hidden] },
  });
  const bad = await (await RewardEncoder.load(t.dir, { device: "wasm" })).encode(convs);
  assert.equal(bad.scoreCheck!.mismatches, convs.length);
  assert.deepEqual(bad.scores, ok.scores, "recorded scores are the model's own");
});

Deno.test("model folder problems are named", async () => {
  await using t = await tempDir();
  await assert.rejects(RewardEncoder.load(t.dir), /tokenizer\.json: file not found/);
  await writeTinyModel(t.dir);
  await Deno.remove(`${t.dir}/model.onnx`);
  await assert.rejects(
    RewardEncoder.load(t.dir),
    /is not a model folder: expected a Hugging Face folder \(config\.json \+ model\.safetensors/,
  );
});
