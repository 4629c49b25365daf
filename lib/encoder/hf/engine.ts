/**
 * Runs a Hugging Face reward-model folder (config.json + safetensors, as downloaded)
 * on onnxruntime-web with no Python and no exported ONNX: the network is built from
 * config.json (graph.ts), its weights are converted once into a cache folder beside the
 * model, and the token embedding is gathered on the host straight from the checkpoint.
 */
import { FormatError } from "../../errors.ts";
import { exists } from "../../fsutil.ts";
import { type DecoderSpec, globalWeights, parameterCount, parseDecoderConfig } from "./config.ts";
import { HfCheckpoint, type RowReader } from "./checkpoint.ts";
import { buildDecoderGraph, type ConversionStats, type Precision, WeightFiles } from "./graph.ts";
import { inverseFrequencies, ropeTables } from "./rope.ts";
import type { BatchOutput, Device, EncoderEngine } from "../engine.ts";
import { checkLimits, runSplit } from "../batching.ts";

/** Bumped whenever the built graph changes, so old caches are rebuilt. */
const GRAPH_VERSION = 1;
/** Each external weight file stays under this (onnxruntime-web refuses files of 4 GiB or more). */
const MAX_FILE_BYTES = 1 << 30;
/** The wasm heap is 32-bit: weights beyond this cannot load on the wasm EP. */
const WASM_WEIGHT_LIMIT = 3.5 * 2 ** 30;

/** Precision of the stored weights and of the matrix products. */
export interface HfPrecision {
  weights: Precision;
  compute: Precision;
}

/** What the cache folder records about its build. */
export interface CacheManifest {
  graphVersion: number;
  precision: HfPrecision;
  sources: { file: string; size: number; mtime: number | null }[];
  files: string[];
  stats: ConversionStats;
  seconds: number;
}

/** Whether a folder is a Hugging Face decoder checkpoint this engine can run. */
export async function isHfModelFolder(dir: string): Promise<boolean> {
  return (await exists(`${dir}/config.json`)) &&
    ((await exists(`${dir}/model.safetensors`)) || (await exists(`${dir}/model.safetensors.index.json`)));
}

/** Reads and parses the folder's config.json. */
export async function readDecoderSpec(dir: string): Promise<DecoderSpec> {
  const file = `${dir}/config.json`;
  return parseDecoderConfig(file, await Deno.readTextFile(file), dir);
}

async function sourceKey(dir: string, files: string[]): Promise<CacheManifest["sources"]> {
  const out = [];
  for (const file of ["config.json", ...files]) {
    const st = await Deno.stat(`${dir}/${file}`);
    out.push({ file, size: st.size, mtime: st.mtime?.getTime() ?? null });
  }
  return out;
}

/**
 * Converts the folder's weights into `cacheDir` (default `<dir>/mrm-onnx-<weights>-<compute>`)
 * unless an up-to-date cache is there. The build goes to a temporary folder that is
 * renamed into place, so a killed conversion never leaves a half cache.
 */
export async function prepareHfModel(
  dir: string,
  precision: HfPrecision,
  { cacheDir, log }: { cacheDir?: string; log?: (line: string) => void } = {},
): Promise<{ cacheDir: string; manifest: CacheManifest; built: boolean; spec: DecoderSpec; ckpt: HfCheckpoint }> {
  const spec = await readDecoderSpec(dir);
  const ckpt = await HfCheckpoint.open(dir);
  const out = cacheDir ?? `${dir}/mrm-onnx-${precision.weights}-${precision.compute}`;
  const sources = await sourceKey(dir, ckpt.files);
  if (await exists(`${out}/manifest.json`)) {
    try {
      const m = JSON.parse(await Deno.readTextFile(`${out}/manifest.json`)) as CacheManifest;
      if (
        m.graphVersion === GRAPH_VERSION && JSON.stringify(m.precision) === JSON.stringify(precision) &&
        JSON.stringify(m.sources) === JSON.stringify(sources)
      ) return { cacheDir: out, manifest: m, built: false, spec, ckpt };
    } catch { /* a broken manifest means a rebuild */ }
  }
  // every weight the network needs, with its shape, is checked before any conversion
  const gw = globalWeights(spec);
  for (const w of Object.values(gw)) ckpt.info(w);
  const t0 = performance.now();
  const tmp = `${out}.tmp-${Deno.pid}`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await Deno.mkdir(tmp, { recursive: true });
  try {
    const sink = new WeightFiles(tmp, MAX_FILE_BYTES);
    let done = 0;
    const total = parameterCount(spec) - spec.vocab * spec.hidden;
    const { model, stats } = await buildDecoderGraph(
      spec,
      async (w) => {
        const data = await ckpt.read(w);
        done += data.length;
        log?.(`converting weights: ${(100 * done / total).toFixed(0)}% (${w.name})`);
        return data;
      },
      sink,
      precision,
    );
    await Deno.writeFile(`${tmp}/model.onnx`, model);
    const manifest: CacheManifest = {
      graphVersion: GRAPH_VERSION,
      precision,
      sources,
      files: sink.files,
      stats,
      seconds: (performance.now() - t0) / 1000,
    };
    await Deno.writeTextFile(`${tmp}/manifest.json`, JSON.stringify(manifest, null, 1));
    await Deno.remove(out, { recursive: true }).catch(() => {});
    await Deno.rename(tmp, out);
    return { cacheDir: out, manifest, built: true, spec, ckpt };
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}

/** Options of the Hugging Face engine. */
export interface HfEngineOptions {
  device: Device;
  precision: HfPrecision;
  cacheDir?: string;
  /** wasm threads @default 1 */
  threads?: number;
  /** attention-score bytes one forward pass may hold; larger batches are split @default 1 GiB */
  scoreBudgetBytes?: number;
  log?: (line: string) => void;
}

/** The built network on onnxruntime-web, fed from the host-side embedding table. */
export class HfEngine implements EncoderEngine {
  private constructor(
    readonly spec: DecoderSpec,
    readonly device: Device,
    readonly precision: HfPrecision,
    readonly manifest: CacheManifest,
    // deno-lint-ignore no-explicit-any
    private readonly ort: any,
    // deno-lint-ignore no-explicit-any
    private readonly session: any,
    private readonly embed: RowReader,
    private readonly inv: Float32Array,
    private readonly scoreBudget: number,
    /** seconds: weight conversion (0 when cached) and session creation */
    readonly loadSeconds: { convert: number; session: number },
  ) {}

  static async load(dir: string, opts: HfEngineOptions): Promise<HfEngine> {
    // the wasm heap check comes before any conversion
    const config = await readDecoderSpec(dir);
    const weightBytes = (parameterCount(config) - config.vocab * config.hidden) *
      (opts.precision.weights === "f16" ? 2 : 4);
    if (opts.device === "wasm" && weightBytes > WASM_WEIGHT_LIMIT) {
      throw new FormatError(
        dir,
        `${(weightBytes / 2 ** 30).toFixed(1)} GiB of weights do not fit onnxruntime-web's 4 GiB wasm heap; ` +
          `run on a GPU (--device webgpu) or use a smaller model`,
      );
    }
    const { cacheDir, manifest, built, spec, ckpt } = await prepareHfModel(dir, opts.precision, opts);
    const ort = opts.device === "webgpu" ? await import("onnxruntime-web/webgpu") : await import("onnxruntime-web");
    ort.env.wasm.numThreads = opts.threads ?? 1;
    ort.env.logLevel = "error";
    const t0 = performance.now();
    const externalData = [];
    for (const f of manifest.files) externalData.push({ path: f, data: await Deno.readFile(`${cacheDir}/${f}`) });
    let session;
    try {
      session = await ort.InferenceSession.create(await Deno.readFile(`${cacheDir}/model.onnx`), {
        executionProviders: [opts.device],
        graphOptimizationLevel: "all",
        externalData,
      });
    } catch (e) {
      throw new FormatError(`${cacheDir}/model.onnx`, `onnxruntime-web (${opts.device}) could not load it: ${e}`);
    }
    const sessionSeconds = (performance.now() - t0) / 1000;
    const embed = await ckpt.rows(globalWeights(spec).embed);
    return new HfEngine(
      spec,
      opts.device,
      opts.precision,
      manifest,
      ort,
      session,
      embed,
      inverseFrequencies(spec.rope, spec.headDim),
      opts.scoreBudgetBytes ?? 2 ** 30,
      { convert: built ? manifest.seconds : 0, session: sessionSeconds },
    );
  }

  get hidden(): number {
    return this.spec.hidden;
  }

  get maxTokens(): number {
    return this.spec.maxPositions;
  }

  /** Bytes of float32 attention scores for a batch of `b` sequences of `t` tokens. */
  private scoreBytes(b: number, t: number): number {
    return b * this.spec.heads * t * t * 4;
  }

  limit(tokens: number): string | undefined {
    if (tokens > this.spec.maxPositions) {
      return `is longer than the model's max_position_embeddings (${this.spec.maxPositions})`;
    }
    if (this.scoreBytes(1, tokens) > this.scoreBudget) {
      return `needs ${(this.scoreBytes(1, tokens) / 2 ** 30).toFixed(2)} GiB of attention scores, more than the ` +
        `${(this.scoreBudget / 2 ** 30).toFixed(2)} GiB budget of one forward pass (attentionGiB / --attention_gib)`;
    }
    return undefined;
  }

  async run(seqs: number[][]): Promise<BatchOutput> {
    checkLimits(seqs, (t) => this.limit(t), this.spec.name);
    return await runSplit(
      seqs,
      (b, t) => this.scoreBytes(b, t) <= this.scoreBudget,
      (part) => this.#forward(part, Math.max(...part.map((s) => s.length))),
    );
  }

  async #forward(seqs: number[][], T: number): Promise<BatchOutput> {
    const { ort } = this;
    const B = seqs.length, D = this.spec.hidden, hd = this.spec.headDim;
    const embeds = new Float32Array(B * T * D);
    const pad = new Float32Array(B * T);
    const last = new BigInt64Array(B);
    seqs.forEach((s, b) => {
      s.forEach((tok, t) => embeds.set(this.embed.row(tok), (b * T + t) * D));
      for (let t = s.length; t < T; t++) pad[b * T + t] = -1e9;
      last[b] = BigInt(b * T + s.length - 1);
    });
    const causal = new Float32Array(T * T);
    for (let i = 0; i < T; i++) causal.fill(-1e9, i * T + i + 1, (i + 1) * T);
    const { cos, sin } = ropeTables(this.inv, T);
    const out = await this.session.run({
      inputs_embeds: new ort.Tensor("float32", embeds, [B, T, D]),
      rope_cos: new ort.Tensor("float32", cos, [T, hd]),
      rope_sin: new ort.Tensor("float32", sin, [T, hd]),
      causal_bias: new ort.Tensor("float32", causal, [T, T]),
      pad_bias: new ort.Tensor("float32", pad, [B, 1, 1, T]),
      last_index: new ort.Tensor("int64", last, [B]),
    });
    const rows = Float32Array.from((await out.hidden.getData?.() ?? out.hidden.data) as Float32Array);
    const logits = Float32Array.from((await out.score.getData?.() ?? out.score.data) as Float32Array);
    out.hidden.dispose?.();
    out.score.dispose?.();
    return { rows, logits };
  }

  async dispose(): Promise<void> {
    this.embed.close();
    await this.session.release?.();
  }
}
