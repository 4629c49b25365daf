/**
 * The native torch.save reader against files PyTorch wrote (tests/fixtures/torch/, made by
 * make_torch_fixtures.py with Debian's python3-torch), and the release's .pt store and
 * model.pt through the CLI, with results identical to the safetensors path.
 */
import assert from "node:assert/strict";
import { torchTensors } from "../../lib/store/torch.ts";
import { loadStore, writeStore } from "../../lib/store/store.ts";
import { readAll, writeSafetensors } from "../../lib/store/safetensors.ts";
import { loadCheckpoint } from "../../lib/run/checkpoint.ts";
import { paramsToTensors } from "../../lib/model/params.ts";
import { loadModel } from "../../mod.ts";
import { runTask, tempDir } from "../helpers.ts";

const FIX = new URL("../fixtures/torch/", import.meta.url).pathname;
const expected = JSON.parse(await Deno.readTextFile(`${FIX}expected.json`));

Deno.test("torch.save files (f32, f16, bf16, strided, dict, state_dicts) decode to torch's own values", async () => {
  for (
    const [file, tensors] of Object.entries<Record<string, { shape: number[]; values: number[] }>>(expected.tensors)
  ) {
    const got = torchTensors(await Deno.readFile(`${FIX}${file}`), file);
    assert.deepEqual(Object.keys(got).sort(), Object.keys(tensors).sort(), file);
    for (const [name, want] of Object.entries(tensors)) {
      assert.deepEqual(got[name].shape, want.shape, `${file} ${name}`);
      assert.deepEqual(Array.from(got[name].data), want.values, `${file} ${name}`);
    }
  }
  assert.throws(() => torchTensors(new Uint8Array(100), "x.pt"), /x.pt: not a zip file/);
  // two names for one storage come back as separate memory (training updates arrays in place)
  const tied = torchTensors(await Deno.readFile(`${FIX}tied.pt`), "tied.pt");
  tied.a.data[0] += 1;
  assert.equal(tied.b.data[0], expected.tensors["tied.pt"].b.values[0]);
  assert.equal(tied.c.data[0], expected.tensors["tied.pt"].c.values[0]);
});

/** 8 users x 3 pairs over the fixture's 24 rows, two conversations each. */
function meta() {
  const m: Record<string, { conversation_id: string; chosen_idx: number; rejected_idx: number }[]> = {};
  for (let u = 0; u < 8; u++) {
    m[`user_${u}`] = [0, 1, 2].map((p) => ({
      conversation_id: `c${u}_${p % 2}`,
      chosen_idx: (u * 3 + p) % 24,
      rejected_idx: (u * 3 + p + 7) % 24,
    }));
  }
  return m;
}

Deno.test("release .pt store and model.pt: train, --init and test --ckpt give what the safetensors path gives", async () => {
  await using t = await tempDir();
  for (const d of ["pt", "st"]) await Deno.mkdir(`${t.dir}/${d}`);
  await Deno.copyFile(`${FIX}emb_f32.pt`, `${t.dir}/pt/V2.pt`);
  await Deno.writeTextFile(`${t.dir}/pt/V2.json`, JSON.stringify(meta()));
  const emb = expected.tensors["emb_f32.pt"][""];
  await writeStore(`${t.dir}/st/V2`, Float32Array.from(emb.values), 8, meta());
  const [a, b] = [await loadStore(`${t.dir}/pt/V2`), await loadStore(`${t.dir}/st/V2`)];
  assert.deepEqual(a.embeddings, b.embeddings);
  assert.deepEqual(a.meta, b.meta);

  const common = ["--preset", "synthetic", "--epochs", "2", "--hidden_layers", "3", "--backend", "wasm"];
  const viaPt = await runTask("train.ts", [
    ...common,
    "--embed_pt",
    `${t.dir}/pt/V2.pt`,
    "--meta_json",
    `${t.dir}/pt/V2.json`,
    "--out",
    `${t.dir}/r1`,
  ]);
  assert.equal(viaPt.code, 0, viaPt.err);
  const viaSt = await runTask("train.ts", [...common, "--data", `${t.dir}/st/V2`, "--out", `${t.dir}/r2`]);
  assert.equal(viaSt.code, 0, viaSt.err);
  const [c1, c2] = [await readAll(`${t.dir}/r1/best.safetensors`), await readAll(`${t.dir}/r2/best.safetensors`)];
  assert.deepEqual(c1.tensors, c2.tensors);

  // the release's state_dict: read natively, equal to torch's values, usable by --init, test --ckpt and loadModel
  const { params } = await loadCheckpoint(`${FIX}model.pt`);
  const sd = expected.tensors["model.pt"];
  assert.deepEqual(Array.from(params.sharedWeight), sd.shared_weight.values);
  assert.deepEqual(Array.from(params.layers[0].weight), sd["layers.0.weight"].values);
  assert.deepEqual((await loadModel(`${FIX}model.pt`)).params, params);
  await writeSafetensors(`${t.dir}/model.safetensors`, paramsToTensors(params));
  const init = await runTask("train.ts", [
    ...common,
    "--data",
    `${t.dir}/pt/V2`,
    "--init",
    `${FIX}model.pt`,
    "--out",
    `${t.dir}/r3`,
  ]);
  assert.equal(init.code, 0, init.err);
  assert.equal(JSON.parse(await Deno.readTextFile(`${t.dir}/r3/config.json`)).init, `${FIX}model.pt`);
  const test = (ckpt: string) =>
    runTask("test.ts", ["--preset", "synthetic", "--ckpt", ckpt, "--data", `${t.dir}/pt/V2`, "--backend", "wasm"]);
  const [tp, ts] = [await test(`${FIX}model.pt`), await test(`${t.dir}/model.safetensors`)];
  assert.equal(tp.code, 0, tp.err);
  const table = (s: string) => s.split("\n").filter((l) => /^\S.*\d+\.\d/.test(l) && !l.includes("/"));
  assert.ok(table(tp.out).length > 0, tp.out);
  assert.deepEqual(table(tp.out), table(ts.out));
});
