/**
 * Reads `torch.save` files natively: the zip container (PyTorch writes its entries
 * uncompressed) and the subset of Python's pickle protocol that tensors and state_dicts
 * use. No Deno API: it works on bytes, so it runs wherever the scoring entry runs.
 * Written here instead of taking an npm zip library and a generic unpickler because
 * the subset is small (stored entries, ~30 opcodes) and tensors need their storages
 * resolved against the zip's `data/<key>` entries, which generic unpicklers leave to
 * hooks anyway.
 */
import { FormatError } from "../errors.ts";
import { bf16ToF32, f16ToF32 } from "./safetensors.ts";
import { rowCount } from "../util/rows.ts";

/** A tensor from a torch file, widened to float32. */
export interface TorchTensor {
  /** values, row-major (strided tensors are gathered) */
  data: Float32Array;
  /** dimensions */
  shape: number[];
  /** element type as stored */
  dtype: "F32" | "F16" | "BF16" | "F64";
}

const SIG_EOCD = 0x06054b50, SIG_ZIP64_LOCATOR = 0x07064b50, SIG_ZIP64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50, SIG_LOCAL = 0x04034b50;

/** The entries of a zip file whose members are stored (method 0), by name. */
export function readZip(bytes: Uint8Array, name: string): Map<string, Uint8Array> {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let eocd = -1;
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 65557); i--) {
    if (dv.getUint32(i, true) === SIG_EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) {
    throw new FormatError(name, "not a zip file (no end-of-central-directory record): not a torch.save file");
  }
  let count = dv.getUint16(eocd + 10, true);
  let cdOffset = dv.getUint32(eocd + 16, true);
  if (count === 0xffff || cdOffset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || dv.getUint32(loc, true) !== SIG_ZIP64_LOCATOR) throw new FormatError(name, "zip64 locator missing");
    const z = Number(dv.getBigUint64(loc + 8, true));
    if (dv.getUint32(z, true) !== SIG_ZIP64_EOCD) throw new FormatError(name, "zip64 end record missing");
    count = Number(dv.getBigUint64(z + 32, true));
    cdOffset = Number(dv.getBigUint64(z + 48, true));
  }
  const out = new Map<string, Uint8Array>();
  let p = cdOffset;
  for (let e = 0; e < count; e++) {
    if (p + 46 > bytes.length || dv.getUint32(p, true) !== SIG_CENTRAL) {
      throw new FormatError(name, `zip central directory entry ${e} is damaged`);
    }
    const method = dv.getUint16(p + 10, true);
    let csize = dv.getUint32(p + 20, true), usize = dv.getUint32(p + 24, true), local = dv.getUint32(p + 42, true);
    const nameLen = dv.getUint16(p + 28, true), extraLen = dv.getUint16(p + 30, true);
    const commentLen = dv.getUint16(p + 32, true);
    const entry = new TextDecoder().decode(bytes.subarray(p + 46, p + 46 + nameLen));
    // zip64 extra field: 8-byte values for the fields saturated at 0xffffffff, in this order
    let x = p + 46 + nameLen;
    const xEnd = x + extraLen;
    while (x + 4 <= xEnd) {
      const id = dv.getUint16(x, true), len = dv.getUint16(x + 2, true);
      if (id === 0x0001) {
        let q = x + 4;
        const next = () => {
          const v = Number(dv.getBigUint64(q, true));
          q += 8;
          return v;
        };
        if (usize === 0xffffffff) usize = next();
        if (csize === 0xffffffff) csize = next();
        if (local === 0xffffffff) local = next();
      }
      x += 4 + len;
    }
    const size = usize;
    if (method !== 0 || csize !== usize) {
      throw new FormatError(
        name,
        `zip entry '${entry}' is compressed (method ${method}); torch.save writes stored entries`,
      );
    }
    if (dv.getUint32(local, true) !== SIG_LOCAL) {
      throw new FormatError(name, `zip entry '${entry}' has no local header`);
    }
    const start = local + 30 + dv.getUint16(local + 26, true) + dv.getUint16(local + 28, true);
    if (start + size > bytes.length) throw new FormatError(name, `zip entry '${entry}' runs past the end of the file`);
    out.set(entry, bytes.subarray(start, start + size));
    p += 46 + nameLen + extraLen + commentLen;
  }
  return out;
}

/** A Python global referenced by the pickle (module.name). */
class Global {
  constructor(readonly module: string, readonly name: string) {}
  get full(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A storage reference (persistent id) awaiting its bytes. */
interface Storage {
  dtype: TorchTensor["dtype"];
  key: string;
}

const STORAGE_DTYPES: Record<string, TorchTensor["dtype"]> = {
  FloatStorage: "F32",
  HalfStorage: "F16",
  BFloat16Storage: "BF16",
  DoubleStorage: "F64",
};
const ELEMENT_BYTES = { F32: 4, F16: 2, BF16: 2, F64: 8 };

/** What `loadTorch` returns: tensors, plain values, lists, and dicts (as objects). */
export type TorchValue = TorchTensor | string | number | boolean | null | TorchValue[] | { [key: string]: TorchValue };

/** Unpickles the subset of protocol 2-4 that torch.save writes for tensors and (nested) dicts of them. */
function unpickle(pkl: Uint8Array, name: string, storage: (s: Storage) => Uint8Array): TorchValue {
  const dv = new DataView(pkl.buffer, pkl.byteOffset, pkl.byteLength);
  // deno-lint-ignore no-explicit-any
  const stack: any[] = [];
  const marks: number[] = [];
  // deno-lint-ignore no-explicit-any
  const memo = new Map<number, any>();
  let i = 0;
  const bad = (what: string): never => {
    throw new FormatError(name, `${what} (at byte ${i} of the pickle); only tensors and dicts of them are read`);
  };
  const popMark = () => {
    const m = marks.pop();
    if (m === undefined) bad("pickle MARK missing");
    return stack.splice(m!);
  };
  const text = (start: number, len: number) => new TextDecoder().decode(pkl.subarray(start, start + len));
  const line = () => {
    const end = pkl.indexOf(10, i);
    const s = text(i, end - i);
    i = end + 1;
    return s;
  };
  // deno-lint-ignore no-explicit-any
  const reduce = (fn: any, args: any[]): any => {
    if (!(fn instanceof Global)) bad("pickle REDUCE on a non-global");
    switch (fn.full) {
      case "torch._utils._rebuild_tensor_v2":
      case "torch._utils._rebuild_tensor": {
        const [st, offset, size, stride] = args as [Storage, number, number[], number[]];
        return tensorFrom(st, offset, size, stride);
      }
      case "torch._utils._rebuild_parameter":
        return args[0];
      case "collections.OrderedDict":
        return {};
      default:
        return bad(`unsupported object ${fn.full}`);
    }
  };
  // elements [from, from + len) of a storage as float32: a view of the file's bytes when they are f32 and
  // aligned (PyTorch aligns its entries to 64 bytes), so a large store is not copied
  const decode = (raw: Uint8Array, dtype: TorchTensor["dtype"], from: number, len: number): Float32Array => {
    const eb = ELEMENT_BYTES[dtype], start = raw.byteOffset + from * eb;
    const bytes = start % eb === 0
      ? new Uint8Array(raw.buffer, start, len * eb)
      : raw.slice(from * eb, (from + len) * eb);
    if (dtype === "F32") return new Float32Array(bytes.buffer, bytes.byteOffset, len);
    if (dtype === "F64") return Float32Array.from(new Float64Array(bytes.buffer, bytes.byteOffset, len));
    const out = new Float32Array(len), half = new Uint16Array(bytes.buffer, bytes.byteOffset, len);
    if (dtype === "F16") f16ToF32(half, out);
    else bf16ToF32(half, out);
    return out;
  };
  const viewed = new Set<string>();
  const tensorFrom = (st: Storage, offset: number, size: number[], stride: number[]): TorchTensor => {
    const raw = storage(st), n = rowCount(raw, ELEMENT_BYTES[st.dtype]);
    const count = size.reduce((a, b) => a * b, 1);
    let contiguous = true;
    for (let d = size.length - 1, expect = 1; d >= 0; expect *= size[d], d--) {
      if (size[d] !== 1 && stride[d] !== expect) contiguous = false;
    }
    if (contiguous) {
      if (offset + count > n) bad(`tensor reaches past its storage '${st.key}'`);
      const data = decode(raw, st.dtype, offset, count);
      // tensors sharing a storage (tied weights) must not share memory: in-place training would update both
      const shared = viewed.has(st.key);
      viewed.add(st.key);
      return { data: shared ? data.slice() : data, shape: [...size], dtype: st.dtype };
    }
    // a strided view: widen the storage once, then gather
    const all = decode(raw, st.dtype, 0, n);
    const data = new Float32Array(count);
    const idx = new Array(size.length).fill(0);
    for (let e = 0; e < count; e++) {
      let src = offset;
      for (let d = 0; d < size.length; d++) src += idx[d] * stride[d];
      if (src >= n) bad(`tensor reaches past its storage '${st.key}'`);
      data[e] = all[src];
      for (let d = size.length - 1; d >= 0; d--) {
        if (++idx[d] < size[d]) break;
        idx[d] = 0;
      }
    }
    return { data, shape: [...size], dtype: st.dtype };
  };
  while (i < pkl.length) {
    const op = pkl[i++];
    switch (op) {
      case 0x80: // PROTO
        i++;
        break;
      case 0x95: // FRAME
        i += 8;
        break;
      case 0x63: { // GLOBAL
        const mod = line(), nm = line();
        stack.push(new Global(mod, nm));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const nm = stack.pop(), mod = stack.pop();
        stack.push(new Global(mod, nm));
        break;
      }
      case 0x71: // BINPUT
        memo.set(pkl[i++], stack[stack.length - 1]);
        break;
      case 0x72: // LONG_BINPUT
        memo.set(dv.getUint32(i, true), stack[stack.length - 1]);
        i += 4;
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, stack[stack.length - 1]);
        break;
      case 0x68: // BINGET
        stack.push(memo.get(pkl[i++]));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(memo.get(dv.getUint32(i, true)));
        i += 4;
        break;
      case 0x28: // MARK
        marks.push(stack.length);
        break;
      case 0x58: { // BINUNICODE
        const len = dv.getUint32(i, true);
        stack.push(text(i + 4, len));
        i += 4 + len;
        break;
      }
      case 0x8c: { // SHORT_BINUNICODE
        const len = pkl[i];
        stack.push(text(i + 1, len));
        i += 1 + len;
        break;
      }
      case 0x4b: // BININT1
        stack.push(pkl[i++]);
        break;
      case 0x4d: // BININT2
        stack.push(dv.getUint16(i, true));
        i += 2;
        break;
      case 0x4a: // BININT
        stack.push(dv.getInt32(i, true));
        i += 4;
        break;
      case 0x8a: { // LONG1
        const len = pkl[i];
        let v = 0n;
        for (let b = len - 1; b >= 0; b--) v = (v << 8n) | BigInt(pkl[i + 1 + b]);
        if (len > 0 && pkl[i + len] & 0x80) v -= 1n << BigInt(8 * len);
        stack.push(Number(v));
        i += 1 + len;
        break;
      }
      case 0x47: // BINFLOAT (big-endian)
        stack.push(dv.getFloat64(i, false));
        i += 8;
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x74: // TUPLE
        stack.push(popMark());
        break;
      case 0x85: // TUPLE1
        stack.push([stack.pop()]);
        break;
      case 0x86: { // TUPLE2
        const b = stack.pop(), a = stack.pop();
        stack.push([a, b]);
        break;
      }
      case 0x87: { // TUPLE3
        const c = stack.pop(), b = stack.pop(), a = stack.pop();
        stack.push([a, b, c]);
        break;
      }
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x7d: // EMPTY_DICT
        stack.push({});
        break;
      case 0x61: { // APPEND
        const v = stack.pop();
        stack[stack.length - 1].push(v);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        stack[stack.length - 1].push(...items);
        break;
      }
      case 0x73: { // SETITEM
        const v = stack.pop(), k = stack.pop();
        stack[stack.length - 1][String(k)] = v;
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        const d = stack[stack.length - 1];
        for (let j = 0; j < items.length; j += 2) d[String(items[j])] = items[j + 1];
        break;
      }
      case 0x51: { // BINPERSID
        const pid = stack.pop();
        if (!Array.isArray(pid) || pid[0] !== "storage" || !(pid[1] instanceof Global)) bad("unknown persistent id");
        const dtype = STORAGE_DTYPES[pid[1].name];
        if (!dtype) bad(`tensor of ${pid[1].name} (expected float32, float16, bfloat16 or float64)`);
        stack.push({ dtype, key: String(pid[2]) } satisfies Storage);
        break;
      }
      case 0x52: { // REDUCE
        const args = stack.pop(), fn = stack.pop();
        stack.push(reduce(fn, args));
        break;
      }
      case 0x62: // BUILD: object state (e.g. a state_dict's _metadata); tensors and dicts keep their values
        stack.pop();
        break;
      case 0x2e: // STOP
        return stack.pop();
      default:
        bad(`unsupported pickle opcode 0x${op.toString(16)}`);
    }
  }
  return bad("pickle has no STOP");
}

/** Whether bytes look like a torch.save file (a zip). */
export function isTorchFile(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 3 && bytes[3] === 4;
}

/** The object a torch.save file holds: a tensor, or dicts/lists of tensors and plain values. */
export function loadTorch(bytes: Uint8Array, name = "torch file"): TorchValue {
  const zip = readZip(bytes, name);
  const pklName = [...zip.keys()].find((k) => k.endsWith("/data.pkl") || k === "data.pkl");
  if (!pklName) throw new FormatError(name, "zip has no data.pkl: not a torch.save file");
  const root = pklName.slice(0, pklName.length - "data.pkl".length);
  const order = zip.get(`${root}byteorder`);
  if (order && new TextDecoder().decode(order).trim() !== "little") {
    throw new FormatError(name, "tensors are stored big-endian; expected little-endian");
  }
  return unpickle(zip.get(pklName)!, name, (s) => {
    const b = zip.get(`${root}data/${s.key}`);
    if (!b) throw new FormatError(name, `storage '${s.key}' is missing from the zip`);
    return b;
  });
}

/** Whether a value is a tensor. */
export function isTensor(v: TorchValue): v is TorchTensor {
  return typeof v === "object" && v !== null && (v as TorchTensor).data instanceof Float32Array;
}

/** A torch file's tensors by name: a state_dict's entries (nested dicts joined by "."), or `""` for a bare tensor. */
export function torchTensors(bytes: Uint8Array, name = "torch file"): Record<string, TorchTensor> {
  const out: Record<string, TorchTensor> = {};
  const seen = new Set<TorchTensor>();
  const walk = (v: TorchValue, path: string) => {
    if (isTensor(v)) {
      // one tensor under two names (pickle shares the object): each name gets its own memory
      out[path] = seen.has(v) ? { ...v, data: v.data.slice(), shape: [...v.shape] } : v;
      seen.add(v);
    } else if (v && typeof v === "object" && !Array.isArray(v)) {
      for (const [k, x] of Object.entries(v)) walk(x, path ? `${path}.${k}` : k);
    }
  };
  walk(loadTorch(bytes, name), "");
  return out;
}
