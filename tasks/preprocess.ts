/** `deno task preprocess:prism|reddit`: raw dataset -> pairs -> ONNX encoder -> embedding store. */
import { prismPairs } from "../lib/data/prism.ts";
import { prismFiles, redditSources } from "../lib/data/raw.ts";
import { readBatchRows, readParquetRows, redditPairs } from "../lib/data/reddit.ts";
import type { PairStats, RawPair } from "../lib/data/pairs.ts";
import { RewardEncoder } from "../lib/encoder/encoder.ts";
import { encodeStore, parseShard, planStore, shardPairs, shardPrefix } from "../lib/encoder/writer.ts";
import { ConfigError } from "../lib/errors.ts";
import { exists } from "../lib/fsutil.ts";
import { formatDuration, RunLog } from "../lib/run/log.ts";
import { main, parse } from "./_cli.ts";

const DEFAULT_MODEL = "Skywork/Skywork-Reward-V2-Llama-3.1-8B";

await main(async () => {
  const v = parse(Deno.args, {
    help: { type: "boolean", short: "h" },
    dataset: { type: "string" },
    model_path: { type: "string" },
    save_prefix: { type: "string" },
    raw_dir: { type: "string" },
    dtype: { type: "string" },
    device: { type: "string" },
    shard: { type: "string" },
    batch_size: { type: "string" },
    threads: { type: "string" },
  });
  const dataset = String(v.dataset ?? "prism");
  if (dataset !== "prism" && dataset !== "reddit") {
    throw new ConfigError(`--dataset must be prism or reddit, got '${dataset}'`);
  }
  if (v.help) {
    console.log(`deno task preprocess:${dataset} [flags]
  --model_path DIR     ONNX export of the reward model (default data/models/${DEFAULT_MODEL.split("/")[1]};
                       a Hub id such as ${DEFAULT_MODEL} means data/models/<name>)
  --save_prefix P      store prefix (default data/emb/${dataset}/V2)
  --raw_dir DIR        use raw files already there (default data/raw/${dataset}, downloading what is missing)
  --dtype f32|f16      embedding dtype written (default f32)
  --device auto|wasm|webgpu   onnxruntime-web execution provider (default auto)
  --shard i/n          encode only slice i of n (users in sorted order); merge with deno task merge-shards
  --batch_size N       sequences per forward pass (default 8)
  --threads N          wasm threads (default 1)`);
    return;
  }
  const log = new RunLog();
  const rawDir = typeof v.raw_dir === "string" ? v.raw_dir : `data/raw/${dataset}`;
  const allowDownload = v.raw_dir === undefined;
  const onProgress = (f: string, d: number, t: number | undefined) =>
    log.status(`downloading ${f}: ${(d / 2 ** 20).toFixed(1)}${t ? ` / ${(t / 2 ** 20).toFixed(1)}` : ""} MiB`);
  let pairs: RawPair[], stats: PairStats;
  if (dataset === "prism") {
    const files = await prismFiles(rawDir, { allowDownload, onProgress });
    ({ pairs, stats } = prismPairs(
      { file: files.survey, text: await Deno.readTextFile(files.survey) },
      { file: files.conversations, text: await Deno.readTextFile(files.conversations) },
    ));
    log.line(
      `PRISM: ${stats.survey_users} users in the survey, ${stats.users_with_conversations} with conversations; ${stats.conversations_in_file} conversations, ${stats.qualifying_turns}/${stats.turns} turns qualify`,
    );
    log.line(
      `kept (>= 6 conversations): ${stats.users} users, ${stats.conversations} conversations, ${stats.pairs} pairs (${stats.pairs_with_empty_reply} with an "EMPTY STRING" reply)`,
    );
  } else {
    const src = await redditSources(rawDir, { allowDownload, onProgress });
    const sources = src.kind === "parquet"
      ? [{ file: src.train, rows: await readParquetRows(src.train), split: "train" as const }, {
        file: src.validation,
        rows: await readParquetRows(src.validation),
        split: "val" as const,
      }]
      : await Promise.all(src.files.map(async (file) => ({ file, rows: await readBatchRows(file) })));
    ({ pairs, stats } = redditPairs(sources));
    log.line(
      `Reddit TLDR (${src.kind}): ${stats.rows} comparisons by ${stats.workers} workers; kept workers in both splits: ${stats.users} users, ${stats.pairs} pairs (${stats.train_pairs} train, ${stats.val_pairs} val)`,
    );
    if (stats.article_prompts) {
      log.line(`note: ${stats.article_prompts} rows (CNN/DM) have no info.post; their prompt is info.article`);
    }
  }
  let prefix = typeof v.save_prefix === "string" ? v.save_prefix : `data/emb/${dataset}/V2`;
  if (typeof v.shard === "string") {
    const shard = parseShard(v.shard);
    pairs = shardPairs(pairs, shard);
    prefix = shardPrefix(prefix, shard);
    log.line(
      `shard ${shard.index}/${shard.count}: ${
        new Set(pairs.map((p) => p.user)).size
      } users, ${pairs.length} pairs -> ${prefix}`,
    );
  }
  let modelDir = typeof v.model_path === "string" ? v.model_path : DEFAULT_MODEL;
  if (
    !(await exists(`${modelDir}/model.onnx`)) && /^[\w.-]+\/[\w.-]+$/.test(modelDir) &&
    (await exists(`data/models/${modelDir.split("/")[1]}/model.onnx`))
  ) {
    modelDir = `data/models/${modelDir.split("/")[1]}`;
  }
  if (!(await exists(`${modelDir}/model.onnx`))) {
    throw new ConfigError(
      `no ONNX model at '${modelDir}' (model.onnx). Export one with Hugging Face Optimum, outside this toolkit:\n` +
        `  optimum-cli export onnx --model ${DEFAULT_MODEL} --task feature-extraction data/models/${
          DEFAULT_MODEL.split("/")[1]
        }\n` +
        `then copy the score head (see README), or pass --model_path <dir>.`,
    );
  }
  const batchSize = v.batch_size === undefined ? 8 : Number(v.batch_size);
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new ConfigError(`--batch_size expects a positive integer, got '${v.batch_size}'`);
  }
  const dtype = String(v.dtype ?? "f32").toUpperCase();
  if (dtype !== "F32" && dtype !== "F16") throw new ConfigError(`--dtype must be f32 or f16, got '${v.dtype}'`);
  const device = String(v.device ?? "auto");
  if (!["auto", "wasm", "webgpu"].includes(device)) {
    throw new ConfigError(`--device must be auto, wasm or webgpu, got '${device}'`);
  }
  const encoder = await RewardEncoder.load(modelDir, {
    device: device as "auto",
    batchSize,
    threads: v.threads ? Number(v.threads) : 1,
  });
  const plan = planStore(pairs);
  log.line(
    `encoding ${plan.conversations.length} responses (${plan.pairs} pairs) with ${encoder.name} on ${encoder.device}${
      encoder.head ? ", reward head found" : ", no reward head (scores null)"
    }`,
  );
  let last = 0;
  const check = { checked: 0, mismatches: 0, maxAbsDiff: 0 };
  const encode = async (c: Parameters<typeof encoder.encode>[0], cb?: Parameters<typeof encoder.encode>[1]) => {
    const e = await encoder.encode(c, cb);
    if (e.scoreCheck) {
      check.checked += e.scoreCheck.checked;
      check.mismatches += e.scoreCheck.mismatches;
      check.maxAbsDiff = Math.max(check.maxAbsDiff, e.scoreCheck.maxAbsDiff);
    }
    return e;
  };
  const r = await encodeStore(prefix, plan, encode, {
    dtype: dtype as "F32" | "F16",
    info: { encoder: encoder.name, model_path: modelDir, dataset },
    onProgress: (p) => {
      const rate = p.rowsDone / Math.max(p.seconds, 1e-9);
      const line = `${p.rowsDone}/${p.rows} responses  ${(rate * plan.pairs / p.rows).toFixed(1)} pairs/s  ${
        (p.tokens / Math.max(p.seconds, 1e-9)).toFixed(0)
      } tokens/s  ETA ${formatDuration((p.rows - p.rowsDone) / rate)}`;
      log.status(line);
      if (!Deno.stdout.isTerminal() && p.seconds - last > 30) {
        last = p.seconds;
        log.line(line);
      }
    },
  });
  if (r.resumedFrom) log.line(`resumed after ${r.resumedFrom} responses`);
  if (check.checked) {
    log.line(
      `reward check: ${check.checked} model rewards vs head . embedding, ${check.mismatches} disagree (max |difference| ${
        check.maxAbsDiff.toExponential(2)
      })`,
    );
    if (check.mismatches) {
      log.line("WARNING: the reward head does not match the model's own rewards; the stored scores are the model's");
    }
  }
  log.line(`wrote ${prefix}.safetensors and ${prefix}.json`);
});
