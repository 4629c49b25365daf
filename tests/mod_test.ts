/** The light entry point: loadModel / parseCheckpoint / adapt / score, and the README's library example. */
import assert from "node:assert/strict";
import { softmax } from "../lib/model/kspace.ts";
import { adaptUser, ConfigError, FormatError, loadModel, parseCheckpoint, scorePairs, scoreRows } from "../mod.ts";
import { initBackend, loadCheckpoint, preset, runTraining } from "../train.ts";
import { loadStore, userPairs, writeSynthetic } from "../data.ts";
import { tempDir } from "./helpers.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** The code of a markdown ```ts block that follows `heading`. */
function readmeBlock(text: string, heading: string): string {
  const at = text.indexOf(heading);
  assert.ok(at >= 0, `README has no '${heading}'`);
  const m = /```ts\n([\s\S]*?)```/.exec(text.slice(at));
  assert.ok(m, `no ts block after '${heading}'`);
  return m[1].trim();
}

Deno.test("README's library example is mod.ts's @example (run by deno test --doc), verbatim", async () => {
  const readme = readmeBlock(await Deno.readTextFile(`${ROOT}README.md`), "## Library");
  const mod = await Deno.readTextFile(`${ROOT}mod.ts`);
  const m = /@example[^\n]*\n \* ```ts\n([\s\S]*?) \* ```/.exec(mod);
  assert.ok(m, "mod.ts has no ts @example");
  const example = m[1].split("\n").map((l) => l.replace(/^ \* ?/, "")).join("\n").trim();
  assert.equal(readme, example);
});

Deno.test("loadModel (path, bytes, loopback HTTP) and userPairs: adapt with the checkpoint's settings, score", async () => {
  await initBackend("wasm");
  await using t = await tempDir();
  await writeSynthetic(`${t.dir}/s`, { preset: "prism", users: 60, dim: 16, seed: 9 });
  const store = await loadStore(`${t.dir}/s`);
  const config = { ...preset("synthetic"), data: `${t.dir}/s`, epochs: 10 };
  await runTraining(store, config, { outDir: `${t.dir}/run` });
  const file = `${t.dir}/run/best.safetensors`;

  const model = await loadModel(file);
  assert.deepEqual(model.adaptation, { innerLr: config.innerLr, innerSteps: config.evalInnerEpochs });
  assert.equal(model.method, "mrm");
  assert.equal(model.dim, 16);
  const bytes = await Deno.readFile(file);
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, () => new Response(bytes));
  try {
    const remote = await loadModel(new URL(`http://127.0.0.1:${server.addr.port}/best.safetensors`));
    assert.deepEqual(remote.params, model.params);
  } finally {
    await server.shutdown();
  }
  assert.deepEqual(parseCheckpoint(bytes).params, model.params);

  // a user's support pairs from the store, scored on the rest: the same numbers as the low-level path
  const support = userPairs(store, "user_05", { limit: 8 });
  const rest = userPairs(store, "user_05").pairs.slice(8);
  const user = model.adapt(support);
  const { params } = await loadCheckpoint(file);
  const low = adaptUser(params, support.chosen, support.rejected, {
    innerLr: config.innerLr,
    innerSteps: config.evalInnerEpochs,
  });
  assert.deepEqual(user.weights, low.weights);
  assert.ok(user.weights.some((v, k) => Math.abs(v - softmax(params.sharedWeight)[k]) > 1e-12), "weights must move");
  const H = store.dim, row = (r: number) => store.embeddings.subarray(r * H, (r + 1) * H);
  const chosen = rest.map((p) => row(p.chosen_idx)), rejected = rest.map((p) => row(p.rejected_idx));
  const want = scorePairs(low, chosen, rejected);
  assert.deepEqual(user.score(chosen), want.chosen);
  assert.deepEqual(
    rest.map((_, i) => user.prefers(chosen[i], rejected[i])),
    want.prefersChosen,
  );
  assert.deepEqual(scoreRows(user.model, chosen), want.chosen);
  // explicit settings override the checkpoint's
  assert.notDeepEqual(model.adapt(support, { innerSteps: 0 }).weights, user.weights);

  // bad input at the boundary: named, typed errors
  assert.throws(() => model.adapt({ chosen: [[1, 2]], rejected: [[1, 2]] }), ConfigError);
  assert.throws(() => model.adapt({ chosen: [row(0)], rejected: [row(0).map(() => NaN)] }), /non-finite/);
  assert.throws(() => userPairs(store, "nobody"), /no user 'nobody'/);
  await assert.rejects(loadModel(`${t.dir}/run`), FormatError);
  await assert.rejects(loadModel(`${t.dir}/none.safetensors`), /file not found/);
  assert.throws(() => parseCheckpoint(new Uint8Array([1, 2, 3]), "x.safetensors"), /x.safetensors: too short/);
});
