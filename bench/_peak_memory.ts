/**
 * Peak memory of meta-training + evaluation alone, run as its own process by
 * bench/epoch_bench.ts (so the benchmark's baseline does not count): builds the
 * PRISM-size store, runs two epochs and one evaluation, prints JSON.
 */
import { initBackend } from "../lib/backend.ts";
import { evaluate } from "../lib/eval/evaluate.ts";
import { initParams } from "../lib/model/params.ts";
import { preset } from "../lib/presets.ts";
import { prepareTasks } from "../lib/run/run.ts";
import { initialState, makeTrainer, trainEpoch } from "../lib/train/meta.ts";
import { peakRss, prismSizeStore } from "./_setup.ts";

await initBackend("wasm");
const before = peakRss();
const store = prismSizeStore();
const config = { ...preset("prism"), data: store.prefix };
const { seen, unseen } = prepareTasks(store, config);
const state = initialState(initParams(store.dim, { seed: 42 }));
const trainer = makeTrainer(seen, store.dim, config.tasksPerBatch);
for (let e = 0; e < 2; e++) await trainEpoch(state, store.embeddings, trainer, config);
await evaluate(state.params, store.embeddings, [...seen, ...unseen], {
  innerLr: config.innerLr,
  innerSteps: config.evalInnerEpochs,
});
console.log(JSON.stringify({ storeBytes: store.embeddings.byteLength, peakBytes: peakRss(), runtimeBytes: before }));
