/**
 * One meta-training epoch and one full evaluation on a synthetic PRISM-size store
 * (1000 users, H=4096, 6-30 conversations of 1-3 pairs each) with the release's
 * PRISM settings. Reference (issue #2): a straightforward PyTorch CPU implementation
 * takes ~1.1 s per epoch and ~1.7 s per evaluation on this 2-core machine; target
 * <= 0.55 s and <= 0.85 s, peak memory <= 1.25x the store. The evaluation baseline
 * measured here is a per-user tfjs port (bench/_baseline.ts: each user's rows
 * uploaded, adapted with tfjs ops, test pairs scored).
 */
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../lib/backend.ts";
import { evaluate } from "../lib/eval/evaluate.ts";
import { initParams } from "../lib/model/params.ts";
import { preset } from "../lib/presets.ts";
import { prepareTasks } from "../lib/run/run.ts";
import { initialState, makeTrainer, trainEpoch } from "../lib/train/meta.ts";
import { prismSizeStore } from "./_setup.ts";
import { accuracyPerUser, adaptPerUser } from "./_baseline.ts";

const backend = await initBackend((Deno.env.get("MRM_BACKEND") as "wasm" | "cpu" | "webgpu" | undefined) ?? "wasm");
const store = prismSizeStore();
const config = { ...preset("prism"), data: store.prefix };
const { seen, unseen } = prepareTasks(store, config);
const all = [...seen, ...unseen];
const state = initialState(initParams(store.dim, { seed: 42 }));
const trainer = makeTrainer(seen, store.dim, config.tasksPerBatch);
const evalOpts = { innerLr: config.innerLr, innerSteps: config.evalInnerEpochs };

Deno.bench({
  name: `meta-training epoch: ${seen.length} seen users, release PRISM settings (${backend})`,
  group: "epoch",
  n: 6,
  warmup: 1,
  fn: async () => {
    await trainEpoch(state, store.embeddings, trainer, config);
  },
});

Deno.bench({
  name: `evaluation of all ${all.length} users (${backend})`,
  group: "evaluation",
  n: 6,
  warmup: 1,
  fn: async () => {
    await evaluate(state.params, store.embeddings, all, evalOpts);
  },
});

Deno.bench({
  name: `baseline: per-user tfjs evaluation of all ${all.length} users`,
  group: "evaluation",
  baseline: true,
  n: 2,
  warmup: 0,
  fn: () => {
    const H = store.dim;
    const W = tf.tensor2d(state.params.layers[0].weight, [2, H]);
    for (const t of all) {
      const rows = (pos: number[], side: Int32Array) => {
        const buf = new Float32Array(pos.length * H);
        pos.forEach((p, i) => buf.set(store.embeddings.subarray(side[p] * H, (side[p] + 1) * H), i * H));
        return tf.tensor2d(buf, [pos.length, H]);
      };
      const trC = rows(t.train, t.chosen),
        trR = rows(t.train, t.rejected),
        teC = rows(t.test, t.chosen),
        teR = rows(t.test, t.rejected);
      const theta = adaptPerUser(W, state.params.sharedWeight, trC, trR, config.innerLr, config.evalInnerEpochs);
      accuracyPerUser(W, theta, teC, teR);
      tf.dispose([theta, trC, trR, teC, teR]);
    }
    W.dispose();
  },
});

// Peak memory of our training + evaluation alone, measured in a clean process first.
const mem = new Deno.Command(Deno.execPath(), {
  args: ["run", "-A", new URL("./_peak_memory.ts", import.meta.url).pathname],
  stdout: "piped",
  stderr: "inherit",
}).outputSync();
const m = JSON.parse(new TextDecoder().decode(mem.stdout).trim().split("\n").pop()!);
console.log(
  `memory: store ${
    (m.storeBytes / 2 ** 20).toFixed(0)
  } MiB (${store.n} rows x H=${store.dim}); peak RSS of 2 epochs + 1 evaluation ${
    (m.peakBytes / 2 ** 20).toFixed(0)
  } MiB = ${(m.peakBytes / m.storeBytes).toFixed(3)}x the store (target <= 1.25x; Deno + tfjs alone: ${
    (m.runtimeBytes / 2 ** 20).toFixed(0)
  } MiB)`,
);
