import assert from "node:assert/strict";
import { f16ToF32, f32ToF16, readAll, readHeader, readTensor, writeSafetensors } from "../../lib/store/safetensors.ts";
import { FormatError } from "../../lib/errors.ts";
import { tempDir } from "../helpers.ts";

/** Builds a raw safetensors file from a header object and data bytes. */
function raw(header: unknown, data: Uint8Array, lenOverride?: number): Uint8Array {
  const hb = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + hb.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(lenOverride ?? hb.length), true);
  out.set(hb, 8);
  out.set(data, 8 + hb.length);
  return out;
}

Deno.test("safetensors: F32 round trip keeps values, names, shapes, metadata, 8-byte alignment", async () => {
  await using t = await tempDir();
  const a = new Float32Array([1.5, -2, 3.25, 0, 1e-7, 65504]);
  const b = new Float32Array([7, 8]);
  await writeSafetensors(`${t.dir}/x.safetensors`, { a: { data: a, shape: [2, 3] }, b: { data: b, shape: [2] } }, {
    metadata: { k: "v" },
  });
  const h = await readHeader(`${t.dir}/x.safetensors`);
  assert.equal(h.dataStart % 8, 0);
  assert.deepEqual(h.metadata, { k: "v" });
  const all = await readAll(`${t.dir}/x.safetensors`);
  assert.deepEqual(Array.from(all.tensors.a.data), Array.from(a));
  assert.deepEqual(all.tensors.a.shape, [2, 3]);
  assert.deepEqual(Array.from(all.tensors.b.data), [7, 8]);
});

Deno.test("safetensors: F16 write/read is within half precision; BF16 reads", async () => {
  await using t = await tempDir();
  const a = new Float32Array([1, -0.333333, 1000.5, 6e-5, -65504, 0]);
  await writeSafetensors(`${t.dir}/h.safetensors`, { e: { data: a, shape: [6] } }, { dtype: "F16" });
  const r = await readTensor(`${t.dir}/h.safetensors`, "e");
  assert.equal(r.dtype, "F16");
  r.data.forEach((v, i) => assert.ok(Math.abs(v - a[i]) <= Math.abs(a[i]) * 1e-3 + 1e-7, `${v} vs ${a[i]}`));
  // BF16: the top 16 bits of float32
  const f = new Float32Array([1.5, -3, 0.15625]);
  const u = new Uint32Array(f.buffer);
  const bf = new Uint16Array(Array.from(u, (x) => x >>> 16));
  await Deno.writeFile(
    `${t.dir}/b.safetensors`,
    raw({ x: { dtype: "BF16", shape: [3], data_offsets: [0, 6] } }, new Uint8Array(bf.buffer)),
  );
  assert.deepEqual(Array.from((await readTensor(`${t.dir}/b.safetensors`, "x")).data), [1.5, -3, 0.15625]);
});

Deno.test("safetensors: f16 conversion matches exact values including subnormals and rounding", () => {
  const src = new Float32Array([0, -0, 1, 2 ** -24, 2 ** -14, 65504, 70000, 1 + 2 ** -11, 1 + 3 * 2 ** -11]);
  const h = new Uint16Array(src.length);
  f32ToF16(src, h);
  const back = new Float32Array(src.length);
  f16ToF32(h, back);
  assert.deepEqual(Array.from(back), [0, -0, 1, 2 ** -24, 2 ** -14, 65504, Infinity, 1, 1 + 2 * 2 ** -10]);
});

Deno.test("safetensors: malformed files are refused with the file name and the problem", async () => {
  await using t = await tempDir();
  const f = `${t.dir}/bad.safetensors`;
  const cases: [Uint8Array, RegExp][] = [
    [new Uint8Array(4), /too short/],
    [raw({}, new Uint8Array(0), 1000), /header length 1000 runs beyond the end/],
    [raw("{not json", new Uint8Array(0)), /not valid JSON/],
    [
      raw({ x: { dtype: "I64", shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)),
      /unknown or unsupported dtype "I64"/,
    ],
    [
      raw({ x: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)),
      /needs 12 bytes but data_offsets span 8/,
    ],
    [
      raw({ x: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, new Uint8Array(8)),
      /run past the end of the data/,
    ],
    [raw({ x: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4)), /invalid shape/],
  ];
  for (const [bytes, re] of cases) {
    await Deno.writeFile(f, bytes);
    await assert.rejects(
      readAll(f),
      (e: Error) => e instanceof FormatError && e.message.startsWith(f) && re.test(e.message),
    );
  }
  await assert.rejects(readAll(`${t.dir}/missing.safetensors`), /missing\.safetensors: file not found/);
});

Deno.test("safetensors: an interrupted write leaves the old file intact (atomic rename)", async () => {
  await using t = await tempDir();
  const f = `${t.dir}/a.safetensors`;
  await writeSafetensors(f, { a: { data: new Float32Array([1, 2]), shape: [2] } });
  await assert.rejects(writeSafetensors(f, { a: { data: new Float32Array([1, 2, 3]), shape: [2] } }), /does not match/);
  assert.deepEqual(Array.from((await readTensor(f, "a")).data), [1, 2]);
  const left = [...Deno.readDirSync(t.dir)].map((e) => e.name);
  assert.deepEqual(left, ["a.safetensors"]);
});
