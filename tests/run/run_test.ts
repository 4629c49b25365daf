import assert from "node:assert/strict";
import { initBackend } from "../../lib/backend.ts";
import { writeSynthetic } from "../../lib/data/synthetic.ts";
import { preset, type TrainConfig } from "../../lib/presets.ts";
import { parseCsv } from "../../lib/run/csv.ts";
import { runTraining } from "../../lib/run/run.ts";
import { loadCheckpoint } from "../../lib/run/checkpoint.ts";
import { readHeader } from "../../lib/store/safetensors.ts";
import { loadStore } from "../../lib/store/store.ts";
import { tempDir } from "../helpers.ts";

async function smallRun(dir: string): Promise<{ prefix: string; config: TrainConfig }> {
  const prefix = `${dir}/syn`;
  await writeSynthetic(prefix, { preset: "prism", users: 40, dim: 16, seed: 5, conversations: [6, 10] });
  const config = { ...preset("synthetic"), data: prefix, epochs: 6, logFreq: 2, saveFreq: 2 };
  return { prefix, config };
}

Deno.test("run folder: files, exact headers, checkpoints named and shaped as docs/formats.md", async () => {
  await initBackend("wasm");
  await using t = await tempDir();
  const { prefix, config } = await smallRun(t.dir);
  const store = await loadStore(prefix);
  const out = `${t.dir}/run`;
  const s = await runTraining(store, config, { outDir: out });
  const files = [...Deno.readDirSync(out)].map((e) => e.name).sort();
  for (
    const f of [
      "config.json",
      "metrics.csv",
      "users.csv",
      "summary.json",
      "train.log",
      "best.safetensors",
      "epoch_2.safetensors",
      "epoch_4.safetensors",
      "epoch_6.safetensors",
      "resume.safetensors",
      "curves.svg",
      "users.svg",
    ]
  ) {
    assert.ok(files.includes(f), `missing ${f} in ${files}`);
  }
  const metrics = parseCsv(await Deno.readTextFile(`${out}/metrics.csv`));
  assert.equal(
    metrics[0].slice(0, 9).join(","),
    "epoch,meta_loss,seen_acc,unseen_acc,overall_acc,seen_worst10,unseen_worst10,lr,seconds",
  );
  assert.deepEqual(metrics.slice(1).map((r) => Number(r[0])), [2, 4, 6]);
  for (const r of metrics.slice(1)) for (const i of [2, 3, 4, 5, 6]) assert.ok(Number(r[i]) >= 0 && Number(r[i]) <= 1);
  const users = parseCsv(await Deno.readTextFile(`${out}/users.csv`));
  assert.equal(users[0].slice(0, 5).join(","), "user_id,group,n_train,n_test,accuracy");
  assert.equal(users.length - 1, s.users.seen + s.users.unseen);
  const summary = JSON.parse(await Deno.readTextFile(`${out}/summary.json`));
  for (const k of ["epoch", "seen_acc", "unseen_acc", "overall_acc"]) {
    assert.equal(typeof summary.best[k], "number");
    assert.equal(typeof summary.last[k], "number");
  }
  assert.equal(summary.last.epoch, 6);
  const h = await readHeader(`${out}/epoch_6.safetensors`);
  assert.deepEqual(Object.keys(h.tensors).sort(), ["layers.0.weight", "shared_weight"]);
  assert.deepEqual(h.tensors["layers.0.weight"].shape, [2, 16]);
  assert.deepEqual(JSON.parse(h.metadata.config).epochs, 6);
  assert.match(await Deno.readTextFile(`${out}/train.log`), /epoch 6\/6/);
});

Deno.test("--resume after an interruption ends with the same weights and metrics as an uninterrupted run", async () => {
  await initBackend("wasm");
  await using t = await tempDir();
  const { prefix, config } = await smallRun(t.dir);
  const store = await loadStore(prefix);
  await runTraining(store, config, { outDir: `${t.dir}/full` });
  // "killed" during epoch 4: epochs 1-3 ran, the last saved state is epoch 2
  await runTraining(store, config, { outDir: `${t.dir}/cut`, stopAfterEpochs: 3 });
  await runTraining(store, config, { outDir: `${t.dir}/cut`, resume: true });
  const a = await Deno.readFile(`${t.dir}/full/epoch_6.safetensors`);
  const b = await Deno.readFile(`${t.dir}/cut/epoch_6.safetensors`);
  assert.deepEqual(b, a, "final checkpoints must be byte-identical");
  const strip = (text: string) => parseCsv(text).map((r) => r.filter((_, i) => i !== 8).join(","));
  assert.deepEqual(
    strip(await Deno.readTextFile(`${t.dir}/cut/metrics.csv`)),
    strip(await Deno.readTextFile(`${t.dir}/full/metrics.csv`)),
  );
  assert.match(await Deno.readTextFile(`${t.dir}/cut/train.log`), /resuming .* after epoch 2/);
});

Deno.test("--init starts from a checkpoint's weights and records it in config.json", async () => {
  await initBackend("wasm");
  await using t = await tempDir();
  const { prefix, config } = await smallRun(t.dir);
  const store = await loadStore(prefix);
  const first = await runTraining(store, { ...config, epochs: 2, logFreq: 1 }, { outDir: `${t.dir}/a` });
  const init = await loadCheckpoint(`${t.dir}/a/epoch_2.safetensors`);
  const second = await runTraining(store, { ...config, epochs: 1, logFreq: 1, metaLr: 1e-9 }, {
    outDir: `${t.dir}/b`,
    init: `${t.dir}/a/epoch_2.safetensors`,
  });
  const after = await loadCheckpoint(`${t.dir}/b/epoch_1.safetensors`);
  // with a vanishing learning rate the weights stay where --init put them
  const d = after.params.layers[0].weight.reduce(
    (s, v, i) => Math.max(s, Math.abs(v - init.params.layers[0].weight[i])),
    0,
  );
  assert.ok(d < 1e-6, `weights moved by ${d}`);
  assert.ok(Math.abs(second.last.overall_acc - first.last.overall_acc) < 0.02);
  assert.equal(JSON.parse(await Deno.readTextFile(`${t.dir}/b/config.json`)).init, `${t.dir}/a/epoch_2.safetensors`);
});
