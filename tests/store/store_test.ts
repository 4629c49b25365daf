import assert from "node:assert/strict";
import { loadStore, writeStore } from "../../lib/store/store.ts";
import { FormatError } from "../../lib/errors.ts";
import { loadCheckpoint, saveCheckpoint } from "../../lib/run/checkpoint.ts";
import { initParams } from "../../lib/model/params.ts";
import { preset } from "../../lib/presets.ts";
import { tempDir, tinyStore } from "../helpers.ts";

Deno.test("store: write then load gives one contiguous array and the same metadata", async () => {
  await using t = await tempDir();
  const { embeddings, meta } = await tinyStore(`${t.dir}/s`, { users: 3, pairs: 2, dim: 5 });
  const s = await loadStore(`${t.dir}/s`);
  assert.equal(s.dim, 5);
  assert.equal(s.n, 12);
  assert.ok(s.embeddings instanceof Float32Array);
  assert.deepEqual(Array.from(s.embeddings), Array.from(embeddings));
  assert.deepEqual(s.meta, meta);
});

Deno.test("store: F16 store loads as float32 within half precision", async () => {
  await using t = await tempDir();
  const e = new Float32Array([0.5, -1.25, 3, 4, 5.5, 6, 7, 8]);
  await writeStore(`${t.dir}/h`, e, 4, { u: [{ chosen_idx: 0, rejected_idx: 1 }] }, { dtype: "F16" });
  const s = await loadStore(`${t.dir}/h`);
  assert.deepEqual(Array.from(s.embeddings), Array.from(e));
  assert.equal(s.info.dtype, "F16");
});

Deno.test("store: bad metadata is refused naming the file and problem, before embeddings load", async () => {
  await using t = await tempDir();
  const p = `${t.dir}/s`;
  const { embeddings } = await tinyStore(p, { users: 2, pairs: 2, dim: 4 });
  // without a recorded JSON hash (as converted stores are), so each edit reaches the metadata checks
  const { writeSafetensors } = await import("../../lib/store/safetensors.ts");
  await writeSafetensors(`${p}.safetensors`, { embeddings: { data: embeddings, shape: [8, 4] } });
  const bad = async (json: string, re: RegExp) => {
    await Deno.writeTextFile(`${p}.json`, json);
    await assert.rejects(
      loadStore(p),
      (e: Error) => e instanceof FormatError && e.message.includes(`${p}.json`) && re.test(e.message),
    );
  };
  await bad("{oops", /not valid JSON/);
  await bad("[]", /expected a JSON object/);
  await bad(JSON.stringify({ u: [] }), /user 'u' has no pairs/);
  await bad(JSON.stringify({ u: [{ chosen_idx: 0, rejected_idx: 8 }] }), /rejected_idx 8 is out of range \[0, 8\)/);
  await bad(JSON.stringify({ u: [{ chosen_idx: -1, rejected_idx: 1 }] }), /chosen_idx -1 is out of range/);
  await bad(
    JSON.stringify({ u: [{ chosen_idx: 0, rejected_idx: 1, split: "test" }] }),
    /split "test" must be "train" or "val"/,
  );
  await Deno.remove(`${p}.json`);
  await assert.rejects(loadStore(p), /s\.json: file not found/);
});

Deno.test("store: embeddings of the wrong rank or name are refused", async () => {
  await using t = await tempDir();
  const { writeSafetensors } = await import("../../lib/store/safetensors.ts");
  await writeSafetensors(`${t.dir}/x.safetensors`, { emb: { data: new Float32Array(4), shape: [4] } });
  await Deno.writeTextFile(`${t.dir}/x.json`, JSON.stringify({ u: [{ chosen_idx: 0, rejected_idx: 1 }] }));
  await assert.rejects(loadStore(`${t.dir}/x`), /no tensor named 'embeddings' \(found: emb\)/);
  await writeSafetensors(`${t.dir}/x.safetensors`, { embeddings: { data: new Float32Array(4), shape: [4] } });
  await assert.rejects(loadStore(`${t.dir}/x`), /must be 2-D \[N, H\]/);
});

Deno.test("checkpoint: state_dict names/shapes, config metadata, and dimension mismatch refused", async () => {
  await using t = await tempDir();
  const params = initParams(6, { hiddenSizes: [3, 2], useBias: true, seed: 1 });
  const cfg = preset("prism");
  await saveCheckpoint(`${t.dir}/c.safetensors`, params, cfg);
  const { readHeader } = await import("../../lib/store/safetensors.ts");
  const h = await readHeader(`${t.dir}/c.safetensors`);
  assert.deepEqual(Object.fromEntries(Object.entries(h.tensors).map(([k, v]) => [k, [v.dtype, v.shape]])), {
    "layers.0.weight": ["F32", [3, 6]],
    "layers.0.bias": ["F32", [3]],
    "layers.1.weight": ["F32", [2, 3]],
    "layers.1.bias": ["F32", [2]],
    shared_weight: ["F32", [2]],
  });
  const back = await loadCheckpoint(`${t.dir}/c.safetensors`);
  assert.deepEqual(back.config, cfg);
  assert.deepEqual(Array.from(back.params.layers[1].weight), Array.from(params.layers[1].weight));
  await assert.rejects(
    loadCheckpoint(`${t.dir}/c.safetensors`, { dim: 4096 }),
    /checkpoint expects embeddings of dimension 6 but the store has H=4096/,
  );
});
