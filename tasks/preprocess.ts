/** `deno task preprocess:prism|reddit`: raw dataset -> pairs -> ONNX encoder -> embedding store. */
import { prismPairs } from "../lib/data/prism.ts";
import { prismFiles, redditSources } from "../lib/data/raw.ts";
import { readBatchRows, readParquetRows, redditPairs } from "../lib/data/reddit.ts";
import type { PairStats, RawPair } from "../lib/data/pairs.ts";
import { RewardEncoder } from "../lib/encoder/encoder.ts";
import { isHfModelFolder } from "../lib/encoder/hf/engine.ts";
import { fetchModelFolder } from "../lib/encoder/hf/fetch.ts";
import { encodeStore, parseShard, planStore, shardPairs, shardPrefix } from "../lib/encoder/writer.ts";
import { ConfigError } from "../lib/errors.ts";
import { exists } from "../lib/fsutil.ts";
import { formatDuration, RunLog } from "../lib/run/log.ts";
import { main, parse, parseStoreDtype } from "./_cli.ts";

const DEFAULT_MODEL = "Skywork/Skywork-Reward-V2-Llama-3.1-8B";

/** "user <id>, conversation <id>" for each store row (its first pair). */
function rowOwners(plan: ReturnType<typeof planStore>): string[] {
  const out: string[] = [];
  for (const [user, entries] of Object.entries(plan.meta)) {
    for (const e of entries) {
      for (const r of [e.chosen_idx, e.rejected_idx]) out[r] ??= `user ${user}, conversation ${e.conversation_id}`;
    }
  }
  return out;
}

/**
 * A model folder on disk, or a Hub id: `org/name` means data/models/<name>, fetched
 * from the Hub when it holds no model yet.
 */
async function resolveModel(arg: string, log: RunLog): Promise<string> {
  const isModel = async (d: string) => (await exists(`${d}/model.onnx`)) || (await isHfModelFolder(d));
  if (await isModel(arg)) return arg;
  const hubId = /^[\w.-]+\/[\w.-]+$/.test(arg) && !(await exists(arg));
  if (!hubId) {
    throw new ConfigError(
      `--model_path '${arg}' holds no model: expected a Hugging Face folder (config.json, tokenizer.json, ` +
        `tokenizer_config.json, model.safetensors or model.safetensors.index.json + shards) or model.onnx`,
    );
  }
  const dir = `data/models/${arg.split("/")[1]}`;
  if (await isModel(dir)) return dir;
  log.line(`fetching ${arg} from the Hub into ${dir}/ (resumable)`);
  try {
    const got = await fetchModelFolder(arg, dir, {
      onProgress: (f, d, t) =>
        log.status(`downloading ${f}: ${(d / 2 ** 20).toFixed(0)}${t ? ` / ${(t / 2 ** 20).toFixed(0)}` : ""} MiB`),
    });
    log.line(`fetched ${got.length} file(s) into ${dir}/`);
  } catch (e) {
    throw new ConfigError(
      `could not fetch ${arg} (${(e as Error).message}). Offline? Put the model folder (config.json, ` +
        `tokenizer.json, tokenizer_config.json, the safetensors shards and their index) in ${dir}/ ` +
        `and rerun, or pass --model_path <dir>.`,
    );
  }
  return dir;
}

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
    precision: { type: "string" },
    cache_dir: { type: "string" },
    attention_gib: { type: "string" },
    engine: { type: "string" },
  });
  const dataset = String(v.dataset ?? "prism");
  if (dataset !== "prism" && dataset !== "reddit") {
    throw new ConfigError(`--dataset must be prism or reddit, got '${dataset}'`);
  }
  if (v.help) {
    console.log(`deno task preprocess:${dataset} [flags]
  --model_path DIR|ID  the reward model: a Hugging Face folder (config.json, tokenizer files,
                       safetensors shards) or an exported ONNX folder (model.onnx). A Hub id such as
                       ${DEFAULT_MODEL} (the default) means data/models/<name>, downloaded
                       there when missing (resumable; HF_TOKEN for gated repos, HF_ENDPOINT for a mirror)
  --precision P        Hugging Face folders: auto (f16 on a GPU with shader-f16, else f32), f32, f16,
                       or f16-weights (f16 weights, f32 arithmetic); weights are converted once into
                       <model>/mrm-onnx-<weights>-<compute>/ (or --cache_dir). With the wgsl engine,
                       f16 sums the GEMMs' 16-product slices in f16 (needs shader-f16; a few % faster),
                       anything else keeps f32 arithmetic
  --engine E           Hugging Face folders: auto (wgsl on webgpu, onnx on wasm), wgsl (our own WebGPU
                       forward pass, f32 arithmetic on the checkpoint's weights), onnx (onnxruntime-web)
  --attention_gib G    attention-score memory of one forward pass (default 1); a sequence that needs
                       more is reported before encoding starts, never truncated
  --save_prefix P      store prefix (default data/emb/${dataset}/V2)
  --raw_dir DIR        use raw files already there (default data/raw/${dataset}, downloading what is missing)
  --dtype f32|f16|bf16 embedding dtype written (default f32)
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
  const modelDir = await resolveModel(typeof v.model_path === "string" ? v.model_path : DEFAULT_MODEL, log);
  const batchSize = v.batch_size === undefined ? 8 : Number(v.batch_size);
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new ConfigError(`--batch_size expects a positive integer, got '${v.batch_size}'`);
  }
  const dtype = parseStoreDtype(v.dtype);
  const device = String(v.device ?? "auto");
  if (!["auto", "wasm", "webgpu"].includes(device)) {
    throw new ConfigError(`--device must be auto, wasm or webgpu, got '${device}'`);
  }
  const precision = String(v.precision ?? "auto");
  if (!["auto", "f32", "f16", "f16-weights"].includes(precision)) {
    throw new ConfigError(`--precision must be auto, f32, f16 or f16-weights, got '${precision}'`);
  }
  const engine = String(v.engine ?? "auto");
  if (!["auto", "onnx", "wgsl"].includes(engine)) {
    throw new ConfigError(`--engine must be auto, onnx or wgsl, got '${engine}'`);
  }
  const attentionGiB = v.attention_gib === undefined ? 1 : Number(v.attention_gib);
  if (!(attentionGiB > 0)) throw new ConfigError(`--attention_gib expects a positive number, got '${v.attention_gib}'`);
  const encoder = await RewardEncoder.load(modelDir, {
    device: device as "auto",
    batchSize,
    threads: v.threads ? Number(v.threads) : 1,
    precision: precision as "auto",
    cacheDir: typeof v.cache_dir === "string" ? v.cache_dir : undefined,
    attentionGiB,
    engine: engine as "auto",
    log: (line) => log.status(line),
  });
  const plan = planStore(pairs);
  // every response is tokenized once up front: what cannot be encoded whole is reported now, not hours in
  const tokenIds = plan.conversations.map((c) => encoder.tokenizer.encode(c));
  const idsOf = new Map(plan.conversations.map((c, i) => [c, tokenIds[i]]));
  const over = encoder.oversized(tokenIds);
  if (over.length) {
    const where = rowOwners(plan);
    throw new ConfigError(
      `${over.length} response(s) cannot be encoded whole (nothing is truncated):\n` +
        over.slice(0, 20).map((o) => `  row ${o.index} (${where[o.index]}): ${o.tokens} tokens, ${o.reason}`).join(
          "\n",
        ) +
        (over.length > 20 ? `\n  ... and ${over.length - 20} more` : ""),
    );
  }
  const totalTokens = tokenIds.reduce((a, s) => a + s.length, 0);
  log.line(
    `${totalTokens} tokens in ${tokenIds.length} responses (longest ${Math.max(...tokenIds.map((s) => s.length))})`,
  );
  log.line(
    `encoding ${plan.conversations.length} responses (${plan.pairs} pairs) with ${encoder.name} on ${encoder.device}${
      encoder.head ? ", reward head found" : ", no reward head (scores null)"
    }`,
  );
  let last = 0;
  const check = { checked: 0, mismatches: 0, maxAbsDiff: 0 };
  const encode = async (c: Parameters<typeof encoder.encode>[0], cb?: Parameters<typeof encoder.encode>[1]) => {
    // the ids tokenized up front (the store writer hands out slices of plan.conversations)
    const e = await encoder.encodeIds(c.map((m) => idsOf.get(m) ?? encoder.tokenizer.encode(m)), cb);
    if (e.scoreCheck) {
      check.checked += e.scoreCheck.checked;
      check.mismatches += e.scoreCheck.mismatches;
      check.maxAbsDiff = Math.max(check.maxAbsDiff, e.scoreCheck.maxAbsDiff);
    }
    return e;
  };
  const r = await encodeStore(prefix, plan, encode, {
    dtype,
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
