/**
 * A small, complete safetensors codec: 8-byte little-endian header length, a JSON
 * header of `{name: {dtype, shape, data_offsets}}` plus optional `__metadata__`, then
 * raw little-endian data. F32, F16 and BF16 decode to Float32Array.
 */
import { FormatError } from "../errors.ts";
import { writeChunksAtomic } from "../fsutil.ts";
import { rowCount } from "../util/rows.ts";

/** Element types this codec reads. */
export type Dtype = "F32" | "F16" | "BF16";
const BYTES: Record<Dtype, number> = { F32: 4, F16: 2, BF16: 2 };

/** One tensor's entry in a safetensors header. */
export interface TensorInfo {
  dtype: Dtype;
  shape: number[];
  /** byte range [begin, end) relative to the start of the data section */
  dataOffsets: [number, number];
}

/** A parsed safetensors header. */
export interface Header {
  tensors: Record<string, TensorInfo>;
  metadata: Record<string, string>;
  /** absolute byte offset where the data section starts */
  dataStart: number;
}

/** A tensor to write: float32 values and their shape. */
export interface TensorToWrite {
  /** values, row-major */
  data: Float32Array;
  /** dimensions */
  shape: number[];
}

/** Parses and validates a header; `fileSize` bounds every offset. */
export function parseHeader(
  file: string,
  prefix: Uint8Array,
  fileSize: number,
): Header {
  if (fileSize < 8) {
    throw new FormatError(file, `too short for a safetensors file (${fileSize} bytes, need at least 8)`);
  }
  const len = Number(new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true));
  if (8 + len > fileSize) {
    throw new FormatError(file, `header length ${len} runs beyond the end of the file (${fileSize} bytes)`);
  }
  if (prefix.length < 8 + len) throw new Error("parseHeader: prefix too short");
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(prefix.subarray(8, 8 + len)));
  } catch (e) {
    throw new FormatError(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!json || typeof json !== "object" || Array.isArray(json)) {
    throw new FormatError(file, "header must be a JSON object");
  }
  const dataStart = 8 + len;
  const dataSize = fileSize - dataStart;
  const tensors: Record<string, TensorInfo> = {};
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      metadata = (v ?? {}) as Record<string, string>;
      continue;
    }
    const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!t || typeof t !== "object") throw new FormatError(file, `tensor '${name}' has no header entry object`);
    if (t.dtype !== "F32" && t.dtype !== "F16" && t.dtype !== "BF16") {
      throw new FormatError(
        file,
        `tensor '${name}' has unknown or unsupported dtype ${JSON.stringify(t.dtype)} (expected F32, F16 or BF16)`,
      );
    }
    const shape = t.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new FormatError(file, `tensor '${name}' has an invalid shape ${JSON.stringify(shape)}`);
    }
    const offs = t.data_offsets;
    if (
      !Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isInteger(d) && d >= 0) ||
      offs[1] < offs[0]
    ) {
      throw new FormatError(file, `tensor '${name}' has invalid data_offsets ${JSON.stringify(offs)}`);
    }
    if (offs[1] > dataSize) {
      throw new FormatError(
        file,
        `tensor '${name}' data_offsets ${JSON.stringify(offs)} run past the end of the data (${dataSize} bytes)`,
      );
    }
    const n = shape.reduce((a: number, b: number) => a * b, 1);
    if (n * BYTES[t.dtype] !== offs[1] - offs[0]) {
      throw new FormatError(
        file,
        `tensor '${name}' shape ${JSON.stringify(shape)} (${t.dtype}) needs ${
          n * BYTES[t.dtype]
        } bytes but data_offsets span ${offs[1] - offs[0]}`,
      );
    }
    tensors[name] = { dtype: t.dtype, shape, dataOffsets: [offs[0], offs[1]] };
  }
  return { tensors, metadata, dataStart };
}

/** Reads only the header of a safetensors file. */
export async function readHeader(path: string): Promise<Header> {
  const f = await openForRead(path);
  try {
    const size = (await f.stat()).size;
    const head = new Uint8Array(8);
    if (size < 8) parseHeader(path, head, size);
    await readFully(f, head, 0, path);
    const len = Number(new DataView(head.buffer).getBigUint64(0, true));
    if (8 + len > size) parseHeader(path, head, size);
    const prefix = new Uint8Array(8 + len);
    prefix.set(head);
    await readFully(f, prefix.subarray(8), 8, path);
    return parseHeader(path, prefix, size);
  } finally {
    f.close();
  }
}

async function openForRead(path: string): Promise<Deno.FsFile> {
  try {
    return await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new FormatError(path, "file not found");
    throw e;
  }
}

async function readFully(f: Deno.FsFile, into: Uint8Array, pos: number, path: string): Promise<void> {
  await f.seek(pos, Deno.SeekMode.Start);
  let off = 0;
  while (off < into.length) {
    const n = await f.read(into.subarray(off));
    if (n === null) throw new FormatError(path, `unexpected end of file at byte ${pos + off}`);
    off += n;
  }
}

/** Converts IEEE half floats to float32. */
export function f16ToF32(src: Uint16Array, dst: Float32Array): void {
  for (let i = 0; i < src.length; i++) {
    const h = src[i];
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) dst[i] = s * m * 2 ** -24;
    else if (e === 31) dst[i] = m ? NaN : s * Infinity;
    else dst[i] = s * (1 + m / 1024) * 2 ** (e - 15);
  }
}

/** Converts float32 to IEEE half floats (round to nearest even). */
export function f32ToF16(src: Float32Array, dst: Uint16Array): void {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < src.length; i++) {
    f[0] = src[i];
    const x = u[0];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      dst[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    let e = exp - 127 + 15;
    if (e >= 31) {
      dst[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        dst[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      let hm = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && (hm & 1))) hm++;
      dst[i] = sign | hm;
      continue;
    }
    let hm = mant >>> 13;
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (hm & 1))) {
      hm++;
      if (hm === 0x400) {
        hm = 0;
        e++;
        if (e >= 31) {
          dst[i] = sign | 0x7c00;
          continue;
        }
      }
    }
    dst[i] = sign | (e << 10) | hm;
  }
}

/** Widens bfloat16 to float32 (exact). */
export function bf16ToF32(src: Uint16Array, dst: Float32Array): void {
  const u = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) u[i] = src[i] << 16;
}

/**
 * Reads one tensor into a new Float32Array, streaming the file in chunks so that
 * a half-precision tensor never sits in memory twice.
 */
export async function readTensor(
  path: string,
  name: string,
  header?: Header,
): Promise<{ data: Float32Array; shape: number[]; dtype: Dtype }> {
  const h = header ?? await readHeader(path);
  const info = h.tensors[name];
  if (!info) {
    throw new FormatError(path, `no tensor named '${name}' (found: ${Object.keys(h.tensors).join(", ") || "none"})`);
  }
  const n = info.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  const f = await openForRead(path);
  try {
    const start = h.dataStart + info.dataOffsets[0];
    if (info.dtype === "F32") {
      await readFully(f, new Uint8Array(out.buffer), start, path);
    } else {
      const chunkElems = 1 << 20;
      const buf = new Uint16Array(chunkElems);
      for (let i = 0; i < n; i += chunkElems) {
        const m = Math.min(chunkElems, n - i);
        await readFully(f, new Uint8Array(buf.buffer, 0, m * 2), start + i * 2, path);
        const dst = out.subarray(i, i + m);
        if (info.dtype === "F16") f16ToF32(buf.subarray(0, m), dst);
        else bf16ToF32(buf.subarray(0, m), dst);
      }
    }
  } finally {
    f.close();
  }
  return { data: out, shape: info.shape, dtype: info.dtype };
}

/** A tensor's bytes exactly as stored (no conversion), for consumers that widen elsewhere (e.g. on a GPU). */
export async function readTensorBytes(path: string, name: string, header: Header): Promise<Uint8Array<ArrayBuffer>> {
  const info = header.tensors[name];
  if (!info) throw new FormatError(path, `no tensor named '${name}'`);
  const bytes = new Uint8Array(info.dataOffsets[1] - info.dataOffsets[0]);
  const f = await openForRead(path);
  try {
    await readFully(f, bytes, header.dataStart + info.dataOffsets[0], path);
  } finally {
    f.close();
  }
  return bytes;
}

/**
 * Decodes every tensor of a safetensors file held in memory (no file or Deno API, so it
 * runs in browsers and Node); `name` labels errors. F16 and BF16 widen to float32.
 */
export function decodeSafetensors(
  bytes: Uint8Array,
  name = "safetensors bytes",
): {
  tensors: Record<string, { data: Float32Array; shape: number[]; dtype: Dtype }>;
  metadata: Record<string, string>;
} {
  const h = parseHeader(name, bytes, bytes.length);
  const tensors: Record<string, { data: Float32Array; shape: number[]; dtype: Dtype }> = {};
  for (const [key, info] of Object.entries(h.tensors)) {
    const raw = bytes.slice(h.dataStart + info.dataOffsets[0], h.dataStart + info.dataOffsets[1]);
    let data: Float32Array;
    if (info.dtype === "F32") data = new Float32Array(raw.buffer);
    else {
      data = new Float32Array(rowCount(raw, 2));
      const half = new Uint16Array(raw.buffer);
      if (info.dtype === "F16") f16ToF32(half, data);
      else bf16ToF32(half, data);
    }
    tensors[key] = { data, shape: info.shape, dtype: info.dtype };
  }
  return { tensors, metadata: h.metadata };
}

/** Reads every tensor of a (small) safetensors file, e.g. a checkpoint. */
export async function readAll(
  path: string,
): Promise<
  { tensors: Record<string, { data: Float32Array; shape: number[]; dtype: Dtype }>; metadata: Record<string, string> }
> {
  const h = await readHeader(path);
  const tensors: Record<string, { data: Float32Array; shape: number[]; dtype: Dtype }> = {};
  for (const name of Object.keys(h.tensors)) tensors[name] = await readTensor(path, name, h);
  return { tensors, metadata: h.metadata };
}

/** Converts float32 to bfloat16 (round to nearest even; NaN stays NaN). */
export function f32ToBf16(src: Float32Array, dst: Uint16Array): void {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const x = u[i];
    if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff)) {
      dst[i] = (x >>> 16) | 0x40;
      continue;
    }
    dst[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
}

/**
 * Writes tensors atomically. `dtype` F16 or BF16 halves the file; tensors keep their
 * insertion order; the data section starts 8-byte aligned.
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, TensorToWrite>,
  { metadata = {}, dtype = "F32" }: { metadata?: Record<string, string>; dtype?: Dtype } = {},
): Promise<void> {
  if (!(dtype in BYTES)) {
    throw new FormatError(path, `cannot write dtype ${JSON.stringify(dtype)} (written: F32, F16, BF16)`);
  }
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  const width = BYTES[dtype];
  let off = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) {
      throw new Error(
        `writeSafetensors: '${name}' shape ${JSON.stringify(t.shape)} does not match ${t.data.length} values`,
      );
    }
    header[name] = { dtype, shape: t.shape, data_offsets: [off, off + n * width] };
    off += n * width;
  }
  let json = JSON.stringify(header);
  const pad = (8 - ((new TextEncoder().encode(json).length) % 8)) % 8;
  json += " ".repeat(pad);
  const hb = new TextEncoder().encode(json);
  const lenBytes = new Uint8Array(8);
  new DataView(lenBytes.buffer).setBigUint64(0, BigInt(hb.length), true);
  function* chunks(): Generator<Uint8Array> {
    yield lenBytes;
    yield hb;
    for (const t of Object.values(tensors)) {
      if (dtype === "F32") {
        yield new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      } else {
        const step = 1 << 20;
        for (let i = 0; i < t.data.length; i += step) {
          const part = t.data.subarray(i, i + step);
          const h = new Uint16Array(part.length);
          if (dtype === "F16") f32ToF16(part, h);
          else f32ToBf16(part, h);
          yield new Uint8Array(h.buffer);
        }
      }
    }
  }
  await writeChunksAtomic(path, chunks());
}
