/** preprocess:* end to end through the CLI: raw files (downloaded on loopback, or on disk) -> store -> train. */
import assert from "node:assert/strict";
import { loadStore } from "../lib/store/store.ts";
import { comparisonsParquet, prismFixture, redditRows, simpleConversation } from "./fixtures/raw_data.ts";
import { writeTinyModel } from "./fixtures/tiny_model.ts";
import { runTask, tempDir } from "./helpers.ts";
import { adaptUser, scorePairs } from "../mod.ts";
import { RewardEncoder } from "../encoder.ts";

const task = (file: string, args: string[], env: Record<string, string> = {}, cwd?: string) =>
  runTask(file, args, { env, cwd });

Deno.test("preprocess:prism downloads the raw files from the Hub (loopback), encodes, and train:prism consumes the store", async () => {
  await using t = await tempDir();
  await writeTinyModel(`${t.dir}/model`);
  const f = prismFixture();
  // more users so the trainer has seen and unseen users: add "dave" and "erin" with 6 simple conversations
  const extra = ["dave", "erin"].flatMap((u) =>
    Array.from({ length: 6 }, (_, i) => JSON.stringify(simpleConversation(`c-${u}${i}`, u)))
  );
  const files: Record<string, string> = {
    "/datasets/HannahRoseKirk/prism-alignment/resolve/main/survey.jsonl": f.survey +
      '{"user_id":"dave"}\n{"user_id":"erin"}\n',
    "/datasets/HannahRoseKirk/prism-alignment/resolve/main/conversations.jsonl": f.conversations + extra.join("\n") +
      "\n",
  };
  const seen: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    seen.push(path);
    return files[path] === undefined ? new Response("not found", { status: 404 }) : new Response(files[path]);
  });
  try {
    const endpoint = `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}`;
    const prefix = `${t.dir}/emb/prism/V2`;
    const r = await task(
      "preprocess.ts",
      ["--dataset", "prism", "--model_path", `${t.dir}/model`, "--save_prefix", prefix],
      { HF_ENDPOINT: endpoint },
      t.dir,
    );
    assert.ok(await Deno.stat(`${t.dir}/data/raw/prism/survey.jsonl`), "downloaded into data/raw/prism");
    assert.equal(r.code, 0, r.err);
    assert.match(
      r.out,
      /kept \(>= 6 conversations\): 3 users, 18 conversations, 21 pairs \(1 with an "EMPTY STRING" reply\)/,
    );
    assert.match(r.out, /reward head found/);
    assert.match(r.out, /reward check: \d+ model rewards vs head \. embedding, 0 disagree/);
    const store = await loadStore(prefix);
    assert.deepEqual(Object.keys(store.meta), ["alice", "dave", "erin"]);
    assert.equal(store.dim, 16);
    assert.ok(store.meta.alice.every((e) => typeof e.chosen_score === "number"));
    assert.equal(seen.length, 2);
    const tr = await task("train.ts", [
      "--preset",
      "prism",
      "--data",
      prefix,
      "--epochs",
      "2",
      "--out",
      `${t.dir}/run`,
    ]);
    assert.equal(tr.code, 0, tr.err);
    assert.match(tr.out, /best \(selected on test/);
  } finally {
    await server.shutdown();
  }
});

Deno.test("preprocess: --raw_dir without the files says which files and where; a folder without a model says what it needs", async () => {
  await using t = await tempDir();
  let r = await task("preprocess.ts", ["--dataset", "prism", "--raw_dir", `${t.dir}/raw`]);
  assert.equal(r.code, 2);
  assert.match(
    r.err,
    new RegExp(
      `needs ${t.dir}/raw/survey\\.jsonl and ${t.dir}/raw/conversations\\.jsonl \\(from the Hub dataset HannahRoseKirk/prism-alignment\\)`,
    ),
  );
  const f = prismFixture();
  await Deno.mkdir(`${t.dir}/raw`);
  await Deno.writeTextFile(`${t.dir}/raw/survey.jsonl`, f.survey);
  await Deno.writeTextFile(`${t.dir}/raw/conversations.jsonl`, f.conversations);
  r = await task("preprocess.ts", [
    "--dataset",
    "prism",
    "--raw_dir",
    `${t.dir}/raw`,
    "--model_path",
    `${t.dir}/nomodel`,
  ]);
  assert.equal(r.code, 2);
  assert.match(
    r.err,
    /--model_path '.*\/nomodel' holds no model: expected a Hugging Face folder \(config\.json, tokenizer\.json, tokenizer_config\.json, model\.safetensors or model\.safetensors\.index\.json \+ shards\) or model\.onnx/,
  );
  r = await task("preprocess.ts", ["--dataset", "reddit", "--raw_dir", `${t.dir}/none`]);
  assert.match(r.err, /comparisons\/train\/0000\.parquet .*branch refs\/convert\/parquet/);
});

Deno.test("preprocess:prism with a Hub id: the Hugging Face model folder is fetched (loopback), converted, and encodes the store", async () => {
  await using t = await tempDir();
  // the Hub serves tiny-llama (bf16 shards + index, made by transformers) with a byte-level tokenizer
  const hf = new URL("./fixtures/hf/tiny-llama/", import.meta.url).pathname;
  await writeTinyModel(`${t.dir}/tok`);
  const served: Record<string, Uint8Array<ArrayBuffer>> = {};
  for (const e of Deno.readDirSync(hf)) served[e.name] = await Deno.readFile(`${hf}${e.name}`);
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) served[f] = await Deno.readFile(`${t.dir}/tok/${f}`);
  const f = prismFixture();
  await Deno.mkdir(`${t.dir}/raw`);
  await Deno.writeTextFile(`${t.dir}/raw/survey.jsonl`, f.survey);
  await Deno.writeTextFile(`${t.dir}/raw/conversations.jsonl`, f.conversations);
  const seen: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    seen.push(path);
    const m = /^\/test-org\/tiny-reward\/resolve\/main\/(.+)$/.exec(path);
    const body = m ? served[decodeURIComponent(m[1])] : undefined;
    return body ? new Response(body) : new Response("not found", { status: 404 });
  });
  try {
    const endpoint = `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}`;
    const args = ["--dataset", "prism", "--raw_dir", `${t.dir}/raw`, "--model_path", "test-org/tiny-reward"];
    const r = await task(
      "preprocess.ts",
      [...args, "--save_prefix", `${t.dir}/emb/V2`],
      { HF_ENDPOINT: endpoint },
      t.dir,
    );
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /fetching test-org\/tiny-reward from the Hub into data\/models\/tiny-reward\//);
    assert.match(r.out, /fetched 7 file\(s\)/);
    assert.match(r.out, /reward head found/);
    assert.match(r.out, /reward check: \d+ model rewards vs head \. embedding, 0 disagree/);
    assert.ok(seen.includes("/test-org/tiny-reward/resolve/main/model-00003-of-00003.safetensors"));
    const store = await loadStore(`${t.dir}/emb/V2`);
    assert.equal(store.dim, 64);
    assert.ok(store.meta.alice.every((e) => typeof e.chosen_score === "number"));
    const names = [...Deno.readDirSync(`${t.dir}/data/models/tiny-reward`)].map((e) => e.name);
    assert.ok(names.includes("mrm-onnx-f32-f32"), `weights converted into the model folder's cache: ${names}`);
    // a second run reuses the folder and the cache: nothing fetched; a too-long limit is reported with its owner
    seen.length = 0;
    const cfgFile = `${t.dir}/data/models/tiny-reward/config.json`;
    const cfg = JSON.parse(await Deno.readTextFile(cfgFile));
    await Deno.writeTextFile(cfgFile, JSON.stringify({ ...cfg, max_position_embeddings: 20 }));
    const r2 = await task(
      "preprocess.ts",
      [...args, "--save_prefix", `${t.dir}/emb/V3`],
      { HF_ENDPOINT: endpoint },
      t.dir,
    );
    assert.equal(r2.code, 2);
    assert.deepEqual(seen, []);
    assert.match(
      r2.err,
      /\d+ response\(s\) cannot be encoded whole \(nothing is truncated\):\n {2}row \d+ \(user alice, conversation c-a\d\): \d+ tokens, is longer than the model's max_position_embeddings \(20\)/,
    );
  } finally {
    await server.shutdown();
  }
});

Deno.test("preprocess:reddit from the Hub's parquet layout on disk, as F16, in two shards merged", async () => {
  await using t = await tempDir();
  await writeTinyModel(`${t.dir}/model`);
  const rows = redditRows();
  await Deno.mkdir(`${t.dir}/raw/comparisons/train`, { recursive: true });
  await Deno.mkdir(`${t.dir}/raw/comparisons/validation`, { recursive: true });
  // a second worker present in both splits so there are two users to shard
  const w4 = (await import("./fixtures/raw_data.ts")).comparison;
  await Deno.writeFile(
    `${t.dir}/raw/comparisons/train/0000.parquet`,
    comparisonsParquet([...rows.train, w4("q1", "w4", "train", 1)]),
  );
  await Deno.writeFile(
    `${t.dir}/raw/comparisons/validation/0000.parquet`,
    comparisonsParquet([...rows.validation, w4("q2", "w4", "valid2", 0)]),
  );
  const prefix = `${t.dir}/emb/reddit/V2`;
  for (const shard of ["0/2", "1/2"]) {
    const r = await task("preprocess.ts", [
      "--dataset",
      "reddit",
      "--raw_dir",
      `${t.dir}/raw`,
      "--model_path",
      `${t.dir}/model`,
      "--save_prefix",
      prefix,
      "--shard",
      shard,
      "--dtype",
      "f16",
      "--batch_size",
      "2",
    ]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /note: 1 rows \(CNN\/DM\) have no info\.post/);
  }
  const m = await task("merge_shards.ts", ["--save_prefix", prefix, "--num_shards", "2"]);
  assert.equal(m.code, 0, m.err);
  const store = await loadStore(prefix);
  assert.deepEqual(Object.keys(store.meta), ["w1", "w4"]);
  assert.deepEqual(store.meta.w1.map((e) => e.split), ["train", "train", "val", "val"]);
});

Deno.test("library: encode a user's examples, adapt, score new pairs (the README's single-user workflow)", async () => {
  await using t = await tempDir();
  await writeTinyModel(`${t.dir}/model`);
  const { initParams } = await import("../train.ts");
  // --- README example ---
  const encoder = await RewardEncoder.load(`${t.dir}/model`);
  const support = await encoder.encodePairs([
    {
      prompt: [{ role: "user", content: "TL;DR this post: I tried waking up at 5am for a month." }],
      chosen: "Sleep quality mattered more than wake-up time.",
      rejected: "The post is about waking up early.",
    },
    {
      prompt: [{ role: "user", content: "Summarize: I switched from iPhone to Android." }],
      chosen: "Customization and battery life beat ecosystem lock-in.",
      rejected: "The author bought a new phone.",
    },
  ]);
  const model = initParams(16); // or: (await loadCheckpoint("output/.../best.safetensors")).params
  const user = adaptUser(model, support.chosen, support.rejected, { innerLr: 1e-3, innerSteps: 5 });
  const test = await encoder.encodePairs([{
    prompt: "TL;DR: I quit my job to freelance.",
    chosen: "Freelancing needs discipline and planning.",
    rejected: "The author talks about freelancing.",
  }]);
  const scores = scorePairs(user, test.chosen, test.rejected);
  // --- end ---
  assert.equal(support.chosen.length, 2 * 16);
  assert.equal(support.chosenScores!.length, 2);
  assert.equal(scores.chosen.length, 1);
  assert.ok(Number.isFinite(scores.chosen[0] - scores.rejected[0]));
});
