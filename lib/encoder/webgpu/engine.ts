/**
 * Our own WebGPU forward pass of Llama-3.x and Qwen3 reward models (prefill only), in
 * WGSL through `navigator.gpu`. Weights go from the Hugging Face safetensors shards
 * straight into GPU buffers in their own format (bf16 stays bf16: no conversion, no
 * cache, no wasm heap); the kernels widen them to f32 as they load tiles. Per layer:
 * RMSNorm, one fused QKV GEMM, q/k norm + RoPE + head split, flash-style causal GQA,
 * o_proj GEMM added into the residual, RMSNorm, fused gate/up GEMM with SiLU, down GEMM
 * added into the residual; then the final norm of each sequence's last real token only.
 * A whole batch is one command buffer and one readback.
 */
import { FormatError } from "../../errors.ts";
import { type DecoderSpec, globalWeights, layerWeights, type WeightName } from "../hf/config.ts";
import { HfCheckpoint, type RowReader } from "../hf/checkpoint.ts";
import { readDecoderSpec } from "../hf/engine.ts";
import { inverseFrequencies, ropeTables } from "../hf/rope.ts";
import { checkLimits, runSplit } from "../batching.ts";
import type { BatchOutput, EncoderEngine } from "../engine.ts";
import {
  attentionBytes,
  attentionRows,
  attentionShader,
  F16_TILES,
  GEMM_TILE,
  GEMM_TILES,
  gemmShader,
  type GemmTile,
  pickTile,
  rmsNormShader,
  ropeShader,
  SWIGLU_TILES,
  tileName,
  tilesWithin,
  type WeightDtype,
} from "./shaders.ts";

// WebGPU's usage flags (numeric, so this file needs no DOM typings at run time)
const STORAGE = 0x80, COPY_DST = 0x8, COPY_SRC = 0x4, UNIFORM = 0x40, MAP_READ = 0x1, QUERY_RESOLVE = 0x200;

// deno-lint-ignore no-explicit-any
type Gpu = any;

interface GpuWeight {
  buffer: Gpu;
  dtype: WeightDtype;
}

interface Layer {
  inputNorm: GpuWeight;
  qkv: GpuWeight;
  qNorm?: GpuWeight;
  kNorm?: GpuWeight;
  o: GpuWeight;
  postNorm: GpuWeight;
  gate: GpuWeight;
  up: GpuWeight;
  down: GpuWeight;
}

/** Options of the WebGPU engine. */
export interface WebGpuEngineOptions {
  /** time every kernel with timestamp queries (slower; see `profile()`) @default false */
  profile?: boolean;
  /**
   * one GEMM tile for every product, or "auto": per product, the largest candidate tile
   * that still gives `minWorkgroups` workgroups @default "auto"
   */
  tile?: GemmTile | "auto";
  /** the "auto" rule's threshold (about two workgroups per compute unit of a large GPU) @default 256 */
  minWorkgroups?: number;
  /**
   * the GEMMs' arithmetic: "f32", or "f16" (each 32-deep k-slice's products summed in f16,
   * then added in f32, on F16_TILES; needs an adapter with `shader-f16`; see GemmArith). On
   * an H200, 8B shape: 1.4x the tokens/s of f32, hidden states 9e-3 from fp32 (bf16's own
   * error: 5e-2). The encoder's `precision: "auto"` picks f16 where the adapter has it.
   * @default "f32"
   */
  gemmArith?: EngineArith;
  log?: (line: string) => void;
}

/** The GEMMs' arithmetic: f32, or f16 k-slice sums added into f32. */
export type EngineArith = "f32" | "f16";

/** The device features each arithmetic needs. */
export const ARITH_FEATURES: Record<EngineArith, string[]> = {
  f32: [],
  f16: ["shader-f16"],
};

/** Seconds spent per kernel kind since load (profile mode). */
export type KernelProfile = Record<string, { seconds: number; calls: number }>;

/** Whether this engine can run the model (no biases; head_dim a multiple of 16 up to 128; sizes multiples of 16). */
export function wgslSupports(spec: DecoderSpec): string | undefined {
  if (spec.attentionBias || spec.mlpBias) return "attention or MLP biases";
  if (spec.headDim % 16 !== 0 || spec.headDim > 128) return `head_dim ${spec.headDim} (needs a multiple of 16, <= 128)`;
  for (const [k, v] of [["hidden_size", spec.hidden], ["intermediate_size", spec.intermediate]] as const) {
    if (v % GEMM_TILE.bk !== 0) return `${k} ${v} (needs a multiple of ${GEMM_TILE.bk})`;
  }
  return undefined;
}

/** The WGSL engine. */
export class WebGpuEngine implements EncoderEngine {
  readonly device = "webgpu" as const;
  private pipelines = new Map<string, Gpu>();
  private acts?: Record<string, Gpu> & { cap: { M: number; B: number; T: number } };
  private totals: KernelProfile = {};
  /** time every kernel of the next passes (needs `canProfile`) */
  profiling = false;
  /** the GEMM tile candidates, largest first (one entry when a tile was forced) */
  tiles: { plain: GemmTile[]; swiglu: GemmTile[] } = { plain: GEMM_TILES, swiglu: SWIGLU_TILES };
  /** the "auto" rule's workgroup threshold */
  minWorkgroups = 256;
  /** how many products each tile ran, by kind and N x K (the rule's choices) */
  tileUse: Record<string, number> = {};
  /** key rows per attention tile (16, or 8 where the adapter has less workgroup memory) */
  attentionKeys = 16;
  /** the GEMMs' arithmetic (see WebGpuEngineOptions.gemmArith) */
  gemmArith: EngineArith = "f32";

  private constructor(
    readonly spec: DecoderSpec,
    private readonly gpu: Gpu,
    private readonly layers: Layer[],
    private readonly finalNorm: GpuWeight,
    private readonly score: Float32Array,
    private readonly embed: RowReader,
    private readonly inv: Float32Array,
    private readonly bindingLimit: number,
    /** whether the device can take timestamps (loaded with `profile: true`) */
    readonly canProfile: boolean,
    /** seconds to read the weights and upload them */
    readonly loadSeconds: number,
    /** the adapter's description */
    readonly adapterName: string,
  ) {}

  /** Loads a Hugging Face folder onto the first WebGPU adapter. */
  static async load(
    dir: string,
    { profile = false, log, tile = "auto", minWorkgroups = 256, gemmArith = "f32" }: WebGpuEngineOptions = {},
  ): Promise<WebGpuEngine> {
    const spec = await readDecoderSpec(dir);
    const unsupported = wgslSupports(spec);
    if (unsupported) throw new FormatError(dir, `the WebGPU engine does not support ${unsupported}`);
    // deno-lint-ignore no-explicit-any
    const navGpu = (globalThis.navigator as any)?.gpu;
    const adapter = await navGpu?.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) throw new FormatError(dir, "no WebGPU adapter (the WebGPU engine needs a GPU)");
    const lim = adapter.limits;
    const features = profile && adapter.features.has("timestamp-query") ? ["timestamp-query"] : [];
    const lacking = ARITH_FEATURES[gemmArith].filter((f) => !adapter.features.has(f));
    if (lacking.length) {
      throw new FormatError(
        dir,
        `${gemmArith} GEMM arithmetic needs an adapter with ${lacking.join(" and ")}, which this one lacks`,
      );
    }
    const gpu = await adapter.requestDevice({
      requiredFeatures: [...features, ...ARITH_FEATURES[gemmArith]],
      requiredLimits: {
        maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize,
        maxBufferSize: lim.maxBufferSize,
        maxComputeWorkgroupStorageSize: lim.maxComputeWorkgroupStorageSize,
        maxStorageBuffersPerShaderStage: Math.min(lim.maxStorageBuffersPerShaderStage, 10),
      },
    });
    const t0 = performance.now();
    const ckpt = await HfCheckpoint.open(dir);
    let uploaded = 0;
    const upload = async (ws: WeightName[]): Promise<GpuWeight> => {
      const parts = [];
      for (const w of ws) parts.push(await ckpt.readRaw(w));
      const dtype = parts[0].dtype;
      if (parts.some((p) => p.dtype !== dtype)) throw new FormatError(dir, `${ws.map((w) => w.name)} mix dtypes`);
      const size = parts.reduce((a, p) => a + p.bytes.length, 0);
      if (size > lim.maxStorageBufferBindingSize) {
        throw new FormatError(dir, `${ws[0].name}: ${size} bytes exceed the adapter's storage binding limit`);
      }
      const buffer = gpu.createBuffer({ size: Math.ceil(size / 4) * 4, usage: STORAGE | COPY_DST });
      let off = 0;
      for (const p of parts) {
        gpu.queue.writeBuffer(buffer, off, p.bytes);
        off += p.bytes.length;
      }
      uploaded += size;
      if (uploaded > 2 ** 30) {
        await gpu.queue.onSubmittedWorkDone();
        uploaded = 0;
      }
      return { buffer, dtype };
    };
    const layers: Layer[] = [];
    for (let i = 0; i < spec.layers; i++) {
      const w = layerWeights(spec, i);
      log?.(`uploading weights: layer ${i + 1}/${spec.layers}`);
      layers.push({
        inputNorm: await upload([w.inputNorm]),
        qkv: await upload([w.q, w.k, w.v]),
        qNorm: w.qNorm ? await upload([w.qNorm]) : undefined,
        kNorm: w.kNorm ? await upload([w.kNorm]) : undefined,
        o: await upload([w.o]),
        postNorm: await upload([w.postNorm]),
        gate: await upload([w.gate]),
        up: await upload([w.up]),
        down: await upload([w.down]),
      });
    }
    const g = globalWeights(spec);
    const finalNorm = await upload([g.norm]);
    const score = await ckpt.read(g.score);
    await gpu.queue.onSubmittedWorkDone();
    const embed = await ckpt.rows(g.embed);
    const info = adapter.info ?? {};
    const engine = new WebGpuEngine(
      spec,
      gpu,
      layers,
      finalNorm,
      score,
      embed,
      inverseFrequencies(spec.rope, spec.headDim),
      lim.maxStorageBufferBindingSize,
      features.length > 0,
      (performance.now() - t0) / 1000,
      `${info.vendor ?? ""} ${info.description ?? ""}`.trim(),
    );
    engine.profiling = engine.canProfile;
    engine.gemmArith = gemmArith;
    if (gemmArith === "f16") engine.tiles = F16_TILES;
    if (tile !== "auto") engine.tiles = { plain: [tile], swiglu: [tile] };
    engine.minWorkgroups = minWorkgroups;
    const smem = lim.maxComputeWorkgroupStorageSize;
    engine.attentionKeys = attentionBytes(spec.headDim, 16) <= smem ? 16 : 8;
    if (attentionBytes(spec.headDim, engine.attentionKeys) > smem) {
      throw new FormatError(
        dir,
        `head_dim ${spec.headDim} needs more workgroup memory than the adapter's ${smem} bytes`,
      );
    }
    return engine;
  }

  get hidden(): number {
    return this.spec.hidden;
  }

  /** Largest activation of a pass over `tokens` rows, in bytes. */
  private activationBytes(tokens: number): number {
    const s = this.spec;
    return tokens * 4 * Math.max(s.intermediate, (s.heads + 2 * s.kvHeads) * s.headDim, s.hidden);
  }

  limit(tokens: number): string | undefined {
    if (tokens > this.spec.maxPositions) {
      return `is longer than the model's max_position_embeddings (${this.spec.maxPositions})`;
    }
    if (tokens > 65535 || this.activationBytes(tokens) > this.bindingLimit) {
      return `needs more than the adapter's ${(this.bindingLimit / 2 ** 30).toFixed(1)} GiB storage binding limit`;
    }
    return undefined;
  }

  async run(seqs: number[][]): Promise<BatchOutput> {
    checkLimits(seqs, (t) => this.limit(t), this.spec.name);
    return await runSplit(
      seqs,
      (b, t) => b * t <= 65535 && this.activationBytes(b * t) <= this.bindingLimit,
      (part) => this.#forward(part),
    );
  }

  /** Per-kernel GPU seconds of the passes run while `profiling` was on. */
  profile(): KernelProfile {
    return structuredClone(this.totals);
  }

  /** Clears the per-kernel totals. */
  resetProfile(): void {
    this.totals = {};
  }

  private pipeline(key: string, code: () => string): Gpu {
    let p = this.pipelines.get(key);
    if (!p) {
      const module = this.gpu.createShaderModule({ code: code() });
      p = this.gpu.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
      this.pipelines.set(key, p);
    }
    return p;
  }

  private ensureActivations(B: number, T: number): Record<string, Gpu> {
    const M = B * T, s = this.spec;
    const c = this.acts?.cap;
    if (c && c.M >= M && c.B >= B && c.T >= T) return this.acts!;
    if (this.acts) { for (const [k, v] of Object.entries(this.acts)) if (k !== "cap") v.destroy(); }
    const cap = { M: Math.max(M, Math.ceil((c?.M ?? 0) * 1.25)), B: Math.max(B, c?.B ?? 0), T: Math.max(T, c?.T ?? 0) };
    const f32 = (n: number, extra = 0) =>
      this.gpu.createBuffer({ size: Math.max(16, n * 4), usage: STORAGE | COPY_DST | COPY_SRC | extra });
    const qkvWidth = (s.heads + 2 * s.kvHeads) * s.headDim;
    this.acts = Object.assign({
      x: f32(cap.M * s.hidden),
      h: f32(cap.M * s.hidden),
      qkv: f32(cap.M * qkvWidth),
      q: f32(cap.M * s.heads * s.headDim),
      k: f32(cap.M * s.kvHeads * s.headDim),
      v: f32(cap.M * s.kvHeads * s.headDim),
      att: f32(cap.M * s.heads * s.headDim),
      act: f32(cap.M * s.intermediate),
      cs: f32(cap.T * s.headDim),
      lens: f32(cap.B),
      rows: f32(cap.B),
      hid: f32(cap.B * s.hidden),
      read: this.gpu.createBuffer({ size: Math.max(16, cap.B * s.hidden * 4), usage: MAP_READ | COPY_DST }),
    }, { cap });
    return this.acts;
  }

  private uniform(values: (number | { f: number })[]): Gpu {
    const data = new ArrayBuffer(Math.max(16, Math.ceil(values.length / 4) * 16));
    const u = new Uint32Array(data), f = new Float32Array(data);
    values.forEach((v, i) => (typeof v === "number" ? (u[i] = v) : (f[i] = v.f)));
    const b = this.gpu.createBuffer({ size: data.byteLength, usage: UNIFORM | COPY_DST });
    this.gpu.queue.writeBuffer(b, 0, data);
    return b;
  }

  async #forward(seqs: number[][]): Promise<BatchOutput> {
    const s = this.spec, gpu = this.gpu;
    const B = seqs.length, T = Math.max(...seqs.map((q) => q.length)), M = B * T, D = s.hidden, hd = s.headDim;
    const a = this.ensureActivations(B, T);
    // inputs: embeddings (host gather), rotary table, lengths, last-token rows
    const x = new Float32Array(M * D);
    seqs.forEach((q, b) => q.forEach((tok, t) => x.set(this.embed.row(tok), (b * T + t) * D)));
    gpu.queue.writeBuffer(a.x, 0, x);
    // the rotary table the ONNX engine uses, interleaved (cos, sin) per frequency for the rope kernel
    const half = hd / 2, rope = ropeTables(this.inv, T), cs = new Float32Array(T * hd);
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < half; i++) {
        cs[(t * half + i) * 2] = rope.cos[t * hd + i];
        cs[(t * half + i) * 2 + 1] = rope.sin[t * hd + i];
      }
    }
    gpu.queue.writeBuffer(a.cs, 0, cs);
    gpu.queue.writeBuffer(a.lens, 0, Uint32Array.from(seqs, (q) => q.length));
    gpu.queue.writeBuffer(a.rows, 0, Uint32Array.from(seqs, (q, b) => b * T + q.length - 1));

    const qkvN = (s.heads + 2 * s.kvHeads) * hd;
    const u = {
      qkv: this.uniform([M, qkvN, D, 0]),
      o: this.uniform([M, D, s.heads * hd, 1]),
      gateUp: this.uniform([M, s.intermediate, D, 0]),
      down: this.uniform([M, D, s.intermediate, 1]),
      rms: this.uniform([D, { f: s.rmsEps }]),
      rope: this.uniform([T, s.heads, s.kvHeads, hd, { f: s.rmsEps }]),
      att: this.uniform([T, s.heads, s.kvHeads, { f: 1 / Math.sqrt(hd) }]),
    };
    const steps: { name: string; pipeline: Gpu; buffers: Gpu[]; grid: [number, number, number] }[] = [];
    const limit = this.gpu.limits.maxComputeWorkgroupStorageSize;
    /** The kernel of one product: the first candidate tile that gives `minWorkgroups` workgroups. */
    const choose = (kind: "plain" | "swiglu", N: number, K: number, dtype: WeightDtype) => {
      const arith = this.gemmArith;
      // tiles whose k-slice divides K (F16_TILES' 32-deep ones need K % 32 == 0)
      const fit = tilesWithin(this.tiles[kind], kind, arith, limit).filter((t) => K % t.bk === 0);
      const t = pickTile(M, N, fit.length ? fit : [GEMM_TILE], this.minWorkgroups);
      const use = `${kind} N=${N} K=${K}: ${tileName(t)}`;
      this.tileUse[use] = (this.tileUse[use] ?? 0) + 1;
      return {
        pipeline: this.pipeline(`${kind}:${dtype}:${tileName(t)}:${arith}`, () => gemmShader(dtype, kind, t, arith)),
        grid: [Math.ceil(N / t.bn), Math.ceil(M / t.bm), 1] as [number, number, number],
      };
    };
    const gemm = (w: GpuWeight, X: Gpu, Y: Gpu, uni: Gpu, N: number, K: number) => {
      const k = choose("plain", N, K, w.dtype);
      steps.push({ name: "gemm", pipeline: k.pipeline, buffers: [uni, X, w.buffer, Y], grid: k.grid });
    };
    const rms = (g: GpuWeight, X: Gpu, Y: Gpu) =>
      steps.push({
        name: "rmsnorm",
        pipeline: this.pipeline(`rms:${g.dtype}`, () => rmsNormShader(g.dtype, false)),
        buffers: [u.rms, X, g.buffer, Y],
        grid: [M, 1, 1],
      });
    for (const l of this.layers) {
      rms(l.inputNorm, a.x, a.h);
      gemm(l.qkv, a.h, a.qkv, u.qkv, qkvN, D);
      steps.push({
        name: "rope",
        pipeline: this.pipeline(
          `rope:${l.qNorm?.dtype ?? "none"}:${s.qkNorm}`,
          () => ropeShader(l.qNorm?.dtype ?? "F32", s.qkNorm),
        ),
        buffers: [u.rope, a.qkv, a.cs, a.q, a.k, a.v, ...(s.qkNorm ? [l.qNorm!.buffer, l.kNorm!.buffer] : [])],
        grid: [M, s.heads + 2 * s.kvHeads, 1],
      });
      steps.push({
        name: "attention",
        pipeline: this.pipeline(`att:${hd}:${this.attentionKeys}`, () => attentionShader(hd, this.attentionKeys)),
        buffers: [u.att, a.q, a.k, a.v, a.lens, a.att],
        grid: [Math.ceil(T / attentionRows(hd)), s.heads, B],
      });
      gemm(l.o, a.att, a.x, u.o, D, s.heads * hd);
      rms(l.postNorm, a.x, a.h);
      const sw = choose("swiglu", s.intermediate, D, l.gate.dtype);
      steps.push({
        name: "gemm_swiglu",
        pipeline: sw.pipeline,
        buffers: [u.gateUp, a.h, l.gate.buffer, a.act, l.up.buffer],
        grid: sw.grid,
      });
      gemm(l.down, a.act, a.x, u.down, D, s.intermediate);
    }
    steps.push({
      name: "final_norm",
      pipeline: this.pipeline(`rmsi:${this.finalNorm.dtype}`, () => rmsNormShader(this.finalNorm.dtype, true)),
      buffers: [u.rms, a.x, this.finalNorm.buffer, a.hid, a.rows],
      grid: [B, 1, 1],
    });

    let enc = gpu.createCommandEncoder();
    const querySet = this.profiling && this.canProfile
      ? gpu.createQuerySet({ type: "timestamp", count: steps.length * 2 })
      : undefined;
    const passPerStep = querySet || Deno.env.get("MRM_WGSL_PASSES") !== "single";
    let pass = passPerStep ? undefined : enc.beginComputePass();
    const debug = Deno.env.get("MRM_WGSL_DEBUG") !== undefined;
    for (const [i, st] of steps.entries()) {
      const t0 = performance.now();
      if (passPerStep) {
        pass = enc.beginComputePass(
          querySet
            ? { timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } }
            : {},
        );
      }
      pass.setPipeline(st.pipeline);
      pass.setBindGroup(
        0,
        gpu.createBindGroup({
          layout: st.pipeline.getBindGroupLayout(0),
          entries: st.buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
        }),
      );
      pass.dispatchWorkgroups(...st.grid);
      if (passPerStep) pass.end();
      if (debug && !querySet) {
        // diagnostics: run each step alone and print its wall time
        gpu.queue.submit([enc.finish()]);
        await gpu.queue.onSubmittedWorkDone();
        console.error(`${st.name} ${st.grid} ${(performance.now() - t0).toFixed(1)} ms`);
        enc = gpu.createCommandEncoder();
      }
    }
    if (!passPerStep) pass.end();
    let stamps: Gpu, stampsRead: Gpu;
    if (querySet) {
      stamps = gpu.createBuffer({ size: steps.length * 16, usage: QUERY_RESOLVE | COPY_SRC });
      stampsRead = gpu.createBuffer({ size: steps.length * 16, usage: MAP_READ | COPY_DST });
      enc.resolveQuerySet(querySet, 0, steps.length * 2, stamps, 0);
      enc.copyBufferToBuffer(stamps, 0, stampsRead, 0, steps.length * 16);
    }
    enc.copyBufferToBuffer(a.hid, 0, a.read, 0, B * D * 4);
    gpu.queue.submit([enc.finish()]);
    await a.read.mapAsync(1);
    const rows = new Float32Array(a.read.getMappedRange(0, B * D * 4).slice(0));
    a.read.unmap();
    if (querySet) {
      await stampsRead.mapAsync(1);
      const ts = new BigUint64Array(stampsRead.getMappedRange().slice(0));
      stampsRead.unmap();
      steps.forEach((st, i) => {
        const e = (this.totals[st.name] ??= { seconds: 0, calls: 0 });
        e.seconds += Number(ts[2 * i + 1] - ts[2 * i]) / 1e9;
        e.calls++;
      });
      querySet.destroy();
      stamps.destroy();
      stampsRead.destroy();
    }
    for (const b of Object.values(u)) b.destroy();
    const logits = new Float32Array(B);
    for (let b = 0; b < B; b++) {
      let acc = 0;
      for (let i = 0; i < D; i++) acc += rows[b * D + i] * this.score[i];
      logits[b] = acc;
    }
    return { rows, logits };
  }

  // deno-lint-ignore require-await
  async dispose(): Promise<void> {
    this.embed.close();
    this.gpu.destroy();
  }
}
