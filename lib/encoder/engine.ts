/**
 * Engines run a reward model's forward pass on one batch of token sequences and return
 * each sequence's last-layer hidden state at its last real token (after the final
 * norm) and, where the model has it, its reward. Two exist: an exported ONNX folder
 * (`model.onnx`, today's path) and a Hugging Face folder (config.json + safetensors),
 * whose network this toolkit builds itself.
 */
import { FormatError } from "../errors.ts";
import { exists } from "../fsutil.ts";
import { openSession } from "./session.ts";
import { HfEngine, isHfModelFolder, readDecoderSpec } from "./hf/engine.ts";
import { WebGpuEngine, wgslSupports } from "./webgpu/engine.ts";
import { GEMM_TILE } from "./webgpu/shaders.ts";
import type { Precision } from "./hf/graph.ts";
import { type Device, gpuAdapter } from "./device.ts";

export type { Device };

/** One batch's results, rows in the batch's order. */
export interface BatchOutput {
  /** hidden states, batch x H */
  rows: Float32Array;
  /** the model's own reward per sequence, when it has one */
  logits?: Float32Array;
}

/** A loaded forward pass. */
export interface EncoderEngine {
  /** where it runs */
  readonly device: Device;
  /** runs one padded batch of token sequences; last-token hidden states and scores */
  run(seqs: number[][]): Promise<BatchOutput>;
  /** why one sequence of `tokens` tokens cannot run whole, or undefined when it can */
  limit?(tokens: number): string | undefined;
  /** frees the session or GPU buffers */
  dispose?(): Promise<void>;
}

/** Engine settings. */
export interface EngineOptions {
  /** where it runs: "auto" is webgpu on a hardware GPU, else wasm @default "auto" */
  device?: Device | "auto";
  /** wasm threads @default 1 */
  threads?: number;
  /**
   * Hugging Face folders: weight and matrix-product precision. ONNX engine: `auto` = f16 on
   * a GPU with shader-f16, else f32; `f16-weights` stores f16 weights but computes in f32
   * (wasm). WGSL engine (which always reads the checkpoint's own weights): `f16` sums each
   * 16-product slice of the GEMMs in f16 (needs shader-f16), anything else is f32 arithmetic.
   * @default "auto"
   */
  precision?: Precision | "f16-weights" | "auto";
  /** Hugging Face folders: where converted weights are cached @default `<dir>/mrm-onnx-<w>-<c>` */
  cacheDir?: string;
  /**
   * Hugging Face folders: GiB of float32 attention scores one forward pass may hold;
   * larger batches are split, and a longer single sequence is refused @default 1
   */
  attentionGiB?: number;
  /**
   * Hugging Face folders: `wgsl` = this toolkit's own WebGPU forward pass (on the
   * checkpoint's own weights, no conversion; f32 arithmetic, or f16 k-slice sums with
   * precision f16, and auto on a GPU with shader-f16); `onnx` = the network built as ONNX on
   * onnxruntime-web; `auto` = wgsl on the webgpu device, onnx on wasm @default "auto"
   */
  engine?: "auto" | "onnx" | "wgsl";
  /** progress lines (weight conversion) */
  log?: (line: string) => void;
}

/** Opens the right engine for a model folder. */
export async function openEngine(dir: string, opts: EngineOptions = {}): Promise<EncoderEngine> {
  // one probe of the adapter serves the device, the GEMM tile and the precision
  const adapter = opts.device === "wasm" ? undefined : await gpuAdapter();
  const device: Device = opts.device && opts.device !== "auto" ? opts.device : adapter ? "webgpu" : "wasm";
  if (await exists(`${dir}/model.onnx`)) return await OnnxFolderEngine.open(dir, device, opts.threads ?? 1);
  if (await isHfModelFolder(dir)) {
    const kind = opts.engine ?? "auto";
    if (kind === "wgsl" || (kind === "auto" && device === "webgpu")) {
      const unsupported = wgslSupports(await readDecoderSpec(dir));
      if (!unsupported) {
        // software adapters compile large tiles very slowly: keep the default tile there
        const tile = adapter ? "auto" as const : GEMM_TILE;
        // f16 arithmetic when asked, and for `auto` where the adapter has shader-f16: on an H200
        // the 8B shape ran 1.47x faster than f32, its hidden states 9e-3 from fp32 (a sixth of bf16's error)
        const p = opts.precision ?? "auto";
        return await WebGpuEngine.load(dir, {
          tile,
          log: opts.log,
          gemmArith: p === "f16" || (p === "auto" && adapter?.f16) ? "f16" : "f32",
        });
      }
      if (kind === "wgsl") throw new FormatError(dir, `the WebGPU engine does not support ${unsupported}`);
    }
    let p = opts.precision ?? "auto";
    if (p === "auto") p = device === "webgpu" && adapter?.f16 ? "f16" : "f32";
    const precision = p === "f16-weights"
      ? { weights: "f16" as const, compute: "f32" as const }
      : { weights: p, compute: p };
    return await HfEngine.load(dir, {
      device,
      precision,
      cacheDir: opts.cacheDir,
      threads: opts.threads,
      log: opts.log,
      scoreBudgetBytes: (opts.attentionGiB ?? 1) * 2 ** 30,
    });
  }
  throw new FormatError(
    dir,
    "is not a model folder: expected a Hugging Face folder (config.json + model.safetensors or " +
      "model.safetensors.index.json with shards) or an exported ONNX folder (model.onnx)",
  );
}

/** An exported ONNX folder: `input_ids`/`attention_mask` in, `last_hidden_state` (and `logits`) out. */
export class OnnxFolderEngine implements EncoderEngine {
  private constructor(private readonly m: Awaited<ReturnType<typeof openSession>>, private readonly padId: number) {}

  static async open(dir: string, device: Device, threads: number): Promise<OnnxFolderEngine> {
    let padId = 0;
    if (await exists(`${dir}/config.json`)) {
      const cfg = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
      if (typeof cfg.pad_token_id === "number") padId = cfg.pad_token_id;
    }
    return new OnnxFolderEngine(await openSession(dir, { device, threads }), padId);
  }

  get device(): Device {
    return this.m.device;
  }

  async run(seqs: number[][]): Promise<BatchOutput> {
    const { ort, session, inputNames, outputName, logitsName } = this.m;
    const B = seqs.length, T = Math.max(...seqs.map((s) => s.length));
    const ids = new BigInt64Array(B * T), mask = new BigInt64Array(B * T), pos = new BigInt64Array(B * T);
    seqs.forEach((s, b) => {
      for (let t = 0; t < T; t++) {
        ids[b * T + t] = BigInt(t < s.length ? s[t] : this.padId);
        mask[b * T + t] = t < s.length ? 1n : 0n;
        pos[b * T + t] = BigInt(Math.min(t, s.length - 1));
      }
    });
    const feeds: Record<string, unknown> = {
      input_ids: new ort.Tensor("int64", ids, [B, T]),
      attention_mask: new ort.Tensor("int64", mask, [B, T]),
    };
    if (inputNames.includes("position_ids")) feeds.position_ids = new ort.Tensor("int64", pos, [B, T]);
    const out = await session.run(feeds, logitsName ? [outputName, logitsName] : [outputName]);
    const hs = out[outputName];
    const H = hs.dims[2];
    const data = (hs.getData ? await hs.getData() : hs.data) as Float32Array;
    const rows = new Float32Array(B * H);
    seqs.forEach((s, b) => rows.set(data.subarray((b * T + s.length - 1) * H, (b * T + s.length) * H), b * H));
    hs.dispose?.();
    let logits: Float32Array | undefined;
    if (logitsName) {
      const lt = out[logitsName];
      const ld = (lt.getData ? await lt.getData() : lt.data) as Float32Array;
      // per token [B, T, 1] (take the last real token) or pooled [B, 1]
      logits = Float32Array.from(seqs, (s, b) => (lt.dims.length === 3 ? ld[b * T + s.length - 1] : ld[b]));
      lt.dispose?.();
    }
    return { rows, logits };
  }

  async dispose(): Promise<void> {
    await this.m.session.release?.();
  }
}
