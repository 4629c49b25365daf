/** Inputs that used to give silent wrong results or traces (the trust issue), one test per item fixed. */
import assert from "node:assert/strict";
import { loadStore, writeStore } from "../lib/store/store.ts";
import { adaptUser, initParams, scorePairs } from "../mod.ts";
import { applyConfigFlags, flagOptions, parse } from "../tasks/_cli.ts";
import { preset } from "../lib/presets.ts";
import { randomArray, tempDir, tinyStore } from "./helpers.ts";

const root = new URL("..", import.meta.url).pathname;
async function task(file: string, args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${root}tasks/${file}`, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: r.code, out: new TextDecoder().decode(r.stdout), err: new TextDecoder().decode(r.stderr) };
}

Deno.test("merge-shards --dtype bf16 writes real bf16; an unwritable dtype is refused before anything is touched", async () => {
  await using t = await tempDir();
  const a = await tinyStore(`${t.dir}/s.shard-0-of-2`, { users: 2 });
  const b = await tinyStore(`${t.dir}/s.shard-1-of-2`, { users: 2 });
  // the second shard's users must sort after the first's
  const meta = Object.fromEntries(Object.entries(b.meta).map(([u, es]) => [`v${u}`, es]));
  await writeStore(`${t.dir}/s.shard-1-of-2`, b.embeddings, 8, meta);
  let r = await task("merge_shards.ts", ["--save_prefix", `${t.dir}/s`, "--num_shards", "2", "--dtype", "bf16"]);
  assert.equal(r.code, 0, r.err);
  const merged = await loadStore(`${t.dir}/s`);
  const want = [...a.embeddings, ...b.embeddings];
  merged.embeddings.forEach((v, i) =>
    assert.ok(Math.abs(v - want[i]) <= Math.abs(want[i]) * 2 ** -8, `${v} vs ${want[i]}`)
  );
  const before = await Deno.readFile(`${t.dir}/s.safetensors`);
  r = await task("merge_shards.ts", ["--save_prefix", `${t.dir}/s`, "--num_shards", "2", "--dtype", "f64"]);
  assert.equal(r.code, 2);
  assert.match(r.err, /--dtype must be f32, f16 or bf16, got 'f64'/);
  assert.deepEqual(await Deno.readFile(`${t.dir}/s.safetensors`), before, "the good store is untouched");
});

Deno.test("numeric flags take negative values as the release's scripts pass them (--seen_train_limit -1)", () => {
  const v = parse(
    ["--seen_train_limit", "-1", "--unseen_train_limit", "-1", "--warmup_ratio", "-.5", "--epochs", "3"],
    flagOptions({}),
  );
  const c = preset("prism");
  applyConfigFlags(c, v);
  assert.equal(c.seenTrainLimit, -1);
  assert.equal(c.unseenTrainLimit, -1);
  assert.equal(c.warmupRatio, -0.5);
  assert.equal(c.epochs, 3);
});

Deno.test("library: adaptUser/scorePairs refuse mis-sized rows, non-finite values and bad settings", () => {
  const model = initParams(4);
  const row = (x: number) => [x, 0, 0, 0];
  // two 8-wide rows are not four 4-wide rows when given as rows
  assert.throws(
    () => adaptUser(model, [[1, 2, 3, 4, 5, 6, 7, 8]], [[1, 2, 3, 4, 5, 6, 7, 8]]),
    /row 0 has 8 values, the model has H=4/,
  );
  assert.throws(
    () => adaptUser(model, new Float32Array(6), new Float32Array(6)),
    /6 values is not a whole number of rows of H=4/,
  );
  assert.throws(() => adaptUser(model, [row(NaN)], [row(1)]), /chosen: row 0 holds a non-finite value \(NaN\)/);
  assert.throws(() => adaptUser(model, [row(1)], [row(1)], { innerLr: NaN }), /innerLr must be a positive number/);
  assert.throws(() => adaptUser(model, [row(1)], [row(1)], { innerLr: -1 }), /innerLr must be a positive number/);
  assert.throws(
    () => adaptUser(model, [row(1)], [row(1)], { innerSteps: 1.5 }),
    /innerSteps must be a non-negative integer/,
  );
  assert.throws(
    () => adaptUser(model, [row(1)], [row(1)], { innerSteps: -1 }),
    /innerSteps must be a non-negative integer/,
  );
  const user = adaptUser(model, [row(1)], [row(-1)]);
  assert.throws(() => scorePairs(user, [row(Infinity)], [row(1)]), /rows: row 0 holds a non-finite value \(Infinity\)/);
  // rows and the flat form give the same scores
  const s1 = scorePairs(user, [row(1), row(2)], [row(0), row(3)]);
  const s2 = scorePairs(user, new Float32Array([...row(1), ...row(2)]), new Float32Array([...row(0), ...row(3)]));
  assert.deepEqual(s1, s2);
});

Deno.test("stores: NaN/Inf rows are refused naming rows and users; a duplicated user id is refused naming it", async () => {
  await using t = await tempDir();
  const { embeddings, meta } = await tinyStore(`${t.dir}/s`, { users: 3 });
  const bad = embeddings.slice();
  bad[13 * 8 + 2] = NaN; // row 13 belongs to u1 (rows 12..23)
  bad[30 * 8] = Infinity; // row 30: u2
  await writeStore(`${t.dir}/s`, bad, 8, meta);
  await assert.rejects(loadStore(`${t.dir}/s`), /2 embedding row\(s\) hold NaN or Inf: rows 13, 30 \(users u1, u2\)/);
  await writeStore(`${t.dir}/s`, randomArray(36 * 8, 3), 8, meta);
  const text = await Deno.readTextFile(`${t.dir}/s.json`);
  await Deno.writeTextFile(`${t.dir}/s.json`, text.replace('"u2":', '"u0":'));
  await assert.rejects(loadStore(`${t.dir}/s`), /user id "u0" appears twice/);
});
