/**
 * The weights of a Hugging Face model folder as downloaded: `model.safetensors`, or
 * `model.safetensors.index.json` + `model-0000x-of-0000y.safetensors` shards (bf16, f16
 * or f32). Tensors are read one at a time; the embedding table is read row by row.
 */
import { FormatError } from "../../errors.ts";
import { exists } from "../../fsutil.ts";
import { bf16ToF32, f16ToF32, type Header, readHeader, readTensor, readTensorBytes } from "../../store/safetensors.ts";
import type { WeightName } from "./config.ts";

/** The shards of a model folder and where each tensor lives. */
export class HfCheckpoint {
  private constructor(
    readonly dir: string,
    /** tensor name -> shard file name */
    readonly location: Map<string, string>,
    private readonly headers: Map<string, Header>,
  ) {}

  /** Opens the folder's safetensors files (headers only). */
  static async open(dir: string): Promise<HfCheckpoint> {
    const index = `${dir}/model.safetensors.index.json`;
    const files: string[] = [];
    let mapped: Record<string, string> | undefined;
    if (await exists(index)) {
      let parsed: { weight_map?: Record<string, string> };
      try {
        parsed = JSON.parse(await Deno.readTextFile(index));
      } catch (e) {
        throw new FormatError(index, `not valid JSON (${(e as Error).message})`);
      }
      if (!parsed.weight_map || typeof parsed.weight_map !== "object") {
        throw new FormatError(index, "has no weight_map");
      }
      mapped = parsed.weight_map;
      files.push(...new Set(Object.values(mapped)));
    } else if (await exists(`${dir}/model.safetensors`)) {
      files.push("model.safetensors");
    } else {
      throw new FormatError(
        dir,
        "has no model.safetensors or model.safetensors.index.json (a Hugging Face model folder)",
      );
    }
    const headers = new Map<string, Header>();
    const location = new Map<string, string>();
    for (const f of files) {
      if (!(await exists(`${dir}/${f}`))) throw new FormatError(`${dir}/${f}`, "shard named in the index is missing");
      const h = await readHeader(`${dir}/${f}`);
      headers.set(f, h);
      for (const name of Object.keys(h.tensors)) location.set(name, f);
    }
    if (mapped) {
      for (const [name, f] of Object.entries(mapped)) {
        if (location.get(name) !== f) {
          throw new FormatError(`${dir}/${f}`, `index says it holds '${name}', it does not`);
        }
      }
    }
    return new HfCheckpoint(dir, location, headers);
  }

  /** The files that make up the checkpoint (for cache keys). */
  get files(): string[] {
    return [...this.headers.keys()];
  }

  /** Checks that a tensor exists with the expected shape; returns its file and header. */
  info(w: WeightName): { file: string; header: Header } {
    const f = this.location.get(w.name);
    if (!f) throw new FormatError(this.dir, `the checkpoint has no tensor '${w.name}'`);
    const header = this.headers.get(f)!;
    const shape = header.tensors[w.name].shape;
    if (shape.join(",") !== w.shape.join(",")) {
      throw new FormatError(
        `${this.dir}/${f}`,
        `'${w.name}' has shape [${shape}], config.json implies [${w.shape}]`,
      );
    }
    return { file: `${this.dir}/${f}`, header };
  }

  /** Reads a whole tensor as float32 (bf16 and f16 widen exactly). */
  async read(w: WeightName): Promise<Float32Array> {
    const { file, header } = this.info(w);
    return (await readTensor(file, w.name, header)).data;
  }

  /** Reads a tensor's bytes as stored (little-endian), with its dtype: for engines that widen on the GPU. */
  async readRaw(w: WeightName): Promise<{ bytes: Uint8Array<ArrayBuffer>; dtype: "F32" | "F16" | "BF16" }> {
    const { file, header } = this.info(w);
    return { bytes: await readTensorBytes(file, w.name, header), dtype: header.tensors[w.name].dtype };
  }

  /** Opens a row reader over a 2-D tensor (the token embedding). */
  async rows(w: WeightName): Promise<RowReader> {
    const { file, header } = this.info(w);
    return await RowReader.open(file, header, w.name);
  }
}

/** Reads single rows of a 2-D tensor from disk as float32. */
export class RowReader {
  private cache = new Map<number, Float32Array>();
  private constructor(
    private readonly f: Deno.FsFile,
    private readonly file: string,
    private readonly start: number,
    readonly rows: number,
    readonly cols: number,
    private readonly dtype: string,
  ) {}

  static async open(file: string, header: Header, name: string): Promise<RowReader> {
    const t = header.tensors[name];
    if (t.shape.length !== 2) throw new FormatError(file, `'${name}' must be 2-D`);
    const f = await Deno.open(file, { read: true });
    return new RowReader(f, file, header.dataStart + t.dataOffsets[0], t.shape[0], t.shape[1], t.dtype);
  }

  /** Row `r` as float32 (kept in a small cache: chat templates repeat the same tokens). */
  row(r: number): Float32Array {
    if (!Number.isInteger(r) || r < 0 || r >= this.rows) {
      throw new FormatError(this.file, `token id ${r} is outside the embedding table (0..${this.rows - 1})`);
    }
    const hit = this.cache.get(r);
    if (hit) return hit;
    const bytes = this.dtype === "F32" ? 4 : 2;
    const buf = new Uint8Array(this.cols * bytes);
    this.f.seekSync(this.start + r * this.cols * bytes, Deno.SeekMode.Start);
    let off = 0;
    while (off < buf.length) {
      const n = this.f.readSync(buf.subarray(off));
      if (n === null || n === 0) throw new FormatError(this.file, "ends inside the embedding table");
      off += n;
    }
    let out: Float32Array;
    if (this.dtype === "F32") out = new Float32Array(buf.buffer);
    else {
      const src = new Uint16Array(buf.buffer);
      out = new Float32Array(this.cols);
      if (this.dtype === "F16") f16ToF32(src, out);
      else bf16ToF32(src, out);
    }
    if (this.cache.size > 4096) this.cache.clear();
    this.cache.set(r, out);
    return out;
  }

  close(): void {
    this.f.close();
  }
}
