/**
 * The ONNX network of a decoder reward model, built from its DecoderSpec: RMSNorm,
 * grouped-query causal attention with rotary embeddings (Qwen3's q/k norm), SwiGLU, the
 * final norm at each sequence's last real token and the reward head.
 *
 * The token embedding stays out of the graph (the engine gathers rows on the host), so
 * the graph's inputs are `inputs_embeds` [B,T,D], `rope_cos`/`rope_sin` [T,hd],
 * `causal_bias` [T,T], `pad_bias` [B,1,1,T] and `last_index` [B] (row b*T + len-1); its
 * outputs are `hidden` [B,D] and `score` [B,1].
 *
 * The residual stream, norms, rotary embedding and softmax run in float32; matrix
 * products run in `compute` precision (f32, or f16 on a GPU with shader-f16). Weights are
 * stored in `weights` precision in external files of at most `maxFileBytes` each
 * (onnxruntime-web refuses one file of 4 GiB or more).
 */
import { FormatError } from "../../errors.ts";
import { f16ToF32, f32ToF16 } from "../../store/safetensors.ts";
import { type DecoderSpec, globalWeights, layerWeights, type WeightName } from "./config.ts";
import { constInit, DT, type ElemType, encodeModel, externalInit, node, valueInfo } from "./onnx_build.ts";

/** Numeric precisions of the built network. */
export type Precision = "f32" | "f16";

/** What converting the weights did to their values. */
export interface ConversionStats {
  /** weight values written */
  values: number;
  /** values that the f16 conversion changed (0 for f32: bf16 and f16 widen exactly) */
  changed: number;
  /** largest |f16 - original| / |original| over changed values */
  maxRelChange: number;
  /** values too small for f16's normal range (|v| < 2^-14, stored with fewer bits or as 0) */
  subnormal: number;
}

/** Where the weight bytes go: a sequence of files, none larger than the cap. */
export class WeightFiles {
  files: string[] = [];
  private current?: Deno.FsFile;
  private size = 0;
  constructor(private readonly dir: string, private readonly maxFileBytes: number) {}

  async write(bytes: Uint8Array): Promise<{ location: string; offset: number; length: number }> {
    if (bytes.length > this.maxFileBytes) {
      throw new FormatError(
        this.dir,
        `one weight of ${bytes.length} bytes exceeds the ${this.maxFileBytes}-byte file cap`,
      );
    }
    if (!this.current || this.size + bytes.length > this.maxFileBytes) {
      this.current?.close();
      const name = `weights-${String(this.files.length).padStart(3, "0")}.bin`;
      this.files.push(name);
      this.current = await Deno.open(`${this.dir}/${name}`, { write: true, create: true, truncate: true });
      this.size = 0;
    }
    const offset = this.size;
    let off = 0;
    while (off < bytes.length) off += await this.current.write(bytes.subarray(off));
    this.size += bytes.length;
    return { location: this.files[this.files.length - 1], offset, length: bytes.length };
  }

  close(): void {
    this.current?.close();
    this.current = undefined;
  }
}

/** Reads a weight as float32 (the caller's checkpoint). */
export type WeightSource = (w: WeightName) => Promise<Float32Array>;

function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = src[base + c];
  }
  return out;
}

/**
 * Builds the graph and writes its weights; returns the model bytes and conversion stats.
 */
export async function buildDecoderGraph(
  spec: DecoderSpec,
  read: WeightSource,
  sink: WeightFiles,
  { weights = "f32", compute = "f32" }: { weights?: Precision; compute?: Precision } = {},
): Promise<{ model: Uint8Array; stats: ConversionStats }> {
  const stats: ConversionStats = { values: 0, changed: 0, maxRelChange: 0, subnormal: 0 };
  const nodes: unknown[] = [];
  const inits: unknown[] = [];
  const C: ElemType = compute === "f16" ? DT.FLOAT16 : DT.FLOAT;
  let k = 0;
  const tmp = (hint: string) => `${hint}_${k++}`;
  const add = (op: string, inputs: string[], attrs: Record<string, number | number[]> = {}, hint = op) => {
    const out = tmp(hint);
    nodes.push(node(op, inputs, [out], attrs));
    return out;
  };
  const cast = (x: string, to: ElemType, from: ElemType) => (to === from ? x : add("Cast", [x], { to }, "cast"));

  /** a float32 tensor (norm weights, biases), always stored f32 */
  const f32Weight = async (w: WeightName, name: string) => {
    const data = await read(w);
    const ext = await sink.write(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    inits.push(externalInit(name, w.shape, DT.FLOAT, ext));
    stats.values += data.length;
    return name;
  };
  /** a linear layer's weight, stored transposed ([in, out]) in `weights` precision, used in `compute` precision */
  const linearWeight = async (w: WeightName, name: string) => {
    const [out, inp] = w.shape;
    const t = transpose(await read(w), out, inp);
    stats.values += t.length;
    if (weights === "f16") {
      const h = new Uint16Array(t.length);
      f32ToF16(t, h);
      const back = new Float32Array(Math.min(t.length, 1 << 20));
      for (let i = 0; i < t.length; i += back.length) {
        const m = Math.min(back.length, t.length - i);
        f16ToF32(h.subarray(i, i + m), back);
        for (let j = 0; j < m; j++) {
          const v = t[i + j], b = back[j];
          if (!Number.isFinite(b) && Number.isFinite(v)) {
            throw new FormatError(w.name, `value ${v} does not fit in float16 (use --precision f32)`);
          }
          if (v !== 0 && Math.abs(v) < 2 ** -14) stats.subnormal++;
          if (b !== v) {
            stats.changed++;
            stats.maxRelChange = Math.max(stats.maxRelChange, Math.abs(b - v) / Math.abs(v));
          }
        }
      }
      inits.push(externalInit(name, [inp, out], DT.FLOAT16, await sink.write(new Uint8Array(h.buffer))));
      return cast(name, C, DT.FLOAT16);
    }
    inits.push(externalInit(name, [inp, out], DT.FLOAT, await sink.write(new Uint8Array(t.buffer))));
    return cast(name, C, DT.FLOAT);
  };

  inits.push(
    constInit("eps", DT.FLOAT, [], [spec.rmsEps]),
    constInit("scale", DT.FLOAT, [], [1 / Math.sqrt(spec.headDim)]),
    constInit("half_split", DT.INT64, [2], [spec.headDim / 2, spec.headDim / 2]),
    constInit("shape_q", DT.INT64, [4], [0, 0, spec.heads, spec.headDim]),
    constInit("shape_kv", DT.INT64, [4], [0, 0, spec.kvHeads, spec.headDim]),
    constInit("shape_rep", DT.INT64, [4], [0, spec.heads, -1, spec.headDim]),
    constInit("expand_rep", DT.INT64, [5], [1, 1, spec.heads / spec.kvHeads, 1, 1]),
    constInit("axis2", DT.INT64, [1], [2]),
    constInit("shape_merge", DT.INT64, [3], [0, 0, spec.heads * spec.headDim]),
    constInit("shape_rows", DT.INT64, [2], [-1, spec.hidden]),
  );

  const rms = (x: string, g: string) => {
    const ms = add("ReduceMean", [add("Mul", [x, x])], { axes: [-1], keepdims: 1 });
    return add("Mul", [add("Div", [x, add("Sqrt", [add("Add", [ms, "eps"])])]), g], {}, "rms");
  };
  const linear = (x: string, w: string, bias?: string) => {
    const y = add("MatMul", [x, w]);
    return bias ? add("Add", [y, cast(bias, C, DT.FLOAT)]) : y;
  };
  const rope = (x: string) => {
    const [a, b] = [tmp("x1"), tmp("x2")];
    nodes.push(node("Split", [x, "half_split"], [a, b], { axis: -1 }));
    const rot = add("Concat", [add("Neg", [b]), a], { axis: -1 });
    return add("Add", [add("Mul", [x, "rope_cos"]), add("Mul", [rot, "rope_sin"])], {}, "rope");
  };
  const repeatKv = (x: string) =>
    spec.heads === spec.kvHeads
      ? x
      : add("Reshape", [add("Expand", [add("Unsqueeze", [x, "axis2"]), "expand_rep"]), "shape_rep"]);

  let x = "inputs_embeds";
  for (let i = 0; i < spec.layers; i++) {
    const lw = layerWeights(spec, i);
    const p = `l${i}`;
    const opt = async (key: string) => (lw[key] ? await f32Weight(lw[key], `${p}.${key}`) : undefined);
    const n1 = cast(rms(x, await f32Weight(lw.inputNorm, `${p}.input_norm`)), C, DT.FLOAT);
    const q = linear(n1, await linearWeight(lw.q, `${p}.q`), await opt("qBias"));
    const kk = linear(n1, await linearWeight(lw.k, `${p}.k`), await opt("kBias"));
    const v = linear(n1, await linearWeight(lw.v, `${p}.v`), await opt("vBias"));
    let q4 = cast(add("Reshape", [q, "shape_q"]), DT.FLOAT, C);
    let k4 = cast(add("Reshape", [kk, "shape_kv"]), DT.FLOAT, C);
    if (spec.qkNorm) {
      q4 = rms(q4, await f32Weight(lw.qNorm, `${p}.q_norm`));
      k4 = rms(k4, await f32Weight(lw.kNorm, `${p}.k_norm`));
    }
    const perm = { perm: [0, 2, 1, 3] };
    const qr = cast(add("Mul", [rope(add("Transpose", [q4], perm)), "scale"]), C, DT.FLOAT);
    const kr = repeatKv(cast(rope(add("Transpose", [k4], perm)), C, DT.FLOAT));
    const vr = repeatKv(add("Transpose", [add("Reshape", [v, "shape_kv"])], perm));
    let s = cast(add("MatMul", [qr, add("Transpose", [kr], { perm: [0, 1, 3, 2] })]), DT.FLOAT, C);
    s = add("Add", [add("Add", [s, "causal_bias"]), "pad_bias"]);
    const probs = cast(add("Softmax", [s], { axis: -1 }), C, DT.FLOAT);
    const att = add("Reshape", [add("Transpose", [add("MatMul", [probs, vr])], perm), "shape_merge"]);
    const o = linear(att, await linearWeight(lw.o, `${p}.o`), await opt("oBias"));
    x = add("Add", [x, cast(o, DT.FLOAT, C)], {}, "resid");
    const n2 = cast(rms(x, await f32Weight(lw.postNorm, `${p}.post_norm`)), C, DT.FLOAT);
    const gate = linear(n2, await linearWeight(lw.gate, `${p}.gate`), await opt("gateBias"));
    const up = linear(n2, await linearWeight(lw.up, `${p}.up`), await opt("upBias"));
    const act = add("Mul", [add("Mul", [gate, add("Sigmoid", [gate])]), up], {}, "swiglu");
    const down = linear(act, await linearWeight(lw.down, `${p}.down`), await opt("downBias"));
    x = add("Add", [x, cast(down, DT.FLOAT, C)], {}, "resid");
  }
  const gw = globalWeights(spec);
  const last = add("Gather", [add("Reshape", [x, "shape_rows"]), "last_index"], { axis: 0 });
  const normed = rms(last, await f32Weight(gw.norm, "final_norm"));
  nodes.push(node("Identity", [normed], ["hidden"]));
  const score = await read(gw.score);
  inits.push(constInit("score_t", DT.FLOAT, [spec.hidden, 1], Array.from(score)));
  nodes.push(node("MatMul", ["hidden", "score_t"], ["score"]));
  sink.close();

  const model = encodeModel({
    name: `mrm_${spec.family}_reward`,
    node: nodes,
    initializer: inits,
    input: [
      valueInfo("inputs_embeds", DT.FLOAT, ["batch", "seq", spec.hidden]),
      valueInfo("rope_cos", DT.FLOAT, ["seq", spec.headDim]),
      valueInfo("rope_sin", DT.FLOAT, ["seq", spec.headDim]),
      valueInfo("causal_bias", DT.FLOAT, ["seq", "seq"]),
      valueInfo("pad_bias", DT.FLOAT, ["batch", 1, 1, "seq"]),
      valueInfo("last_index", DT.INT64, ["batch"]),
    ],
    output: [
      valueInfo("hidden", DT.FLOAT, ["batch", spec.hidden]),
      valueInfo("score", DT.FLOAT, ["batch", 1]),
    ],
  });
  return { model, stats };
}
