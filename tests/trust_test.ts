/** Inputs that used to give silent wrong results or traces (the trust issue), one test per item fixed. */
import assert from "node:assert/strict";
import { loadStore, writeStore } from "../lib/store/store.ts";
import { writeSafetensors } from "../lib/store/safetensors.ts";
import { adaptUser, scorePairs } from "../mod.ts";
import { initParams } from "../train.ts";
import { applyConfigFlags, flagOptions, parse, uniqueFolder } from "../tasks/_cli.ts";
import { preset } from "../lib/presets.ts";
import { readTruth } from "../lib/eval/oracle.ts";
import { randomArray, runTask, tempDir, tinyStore } from "./helpers.ts";

const task = (file: string, args: string[]) => runTask(file, args);

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

Deno.test("truth files that are not the toolkit's own are ignored with one warning, not a crash", async () => {
  await using t = await tempDir();
  const { meta } = await tinyStore(`${t.dir}/s`, { users: 2, pairs: 3 });
  const warnings: string[] = [];
  const read = () => readTruth(`${t.dir}/s`, { meta, warn: (m) => warnings.push(m) });
  for (
    const [content, why] of [
      ["{not json", /not valid JSON/],
      [JSON.stringify({ users: {}, something: 1 }), /not this toolkit's truth file/],
      [
        JSON.stringify({ users: { u0: { kind: "typical", weights: [1] } }, oracle: { u0: [0.5, 0.5, 0.5] } }),
        /no oracle for user 'u1' \(a partial truth file\)/,
      ],
      [
        JSON.stringify({ users: {}, oracle: { u0: [0.5, 2, 0.5] } }),
        /oracle of user 'u0' is not a list of probabilities/,
      ],
    ] as const
  ) {
    await Deno.writeTextFile(`${t.dir}/s.truth.json`, content);
    assert.equal(await read(), undefined);
    assert.match(warnings.at(-1)!, why);
  }
  const good = {
    users: { u0: { kind: "typical", weights: [1] }, u1: { kind: "contrarian", weights: [1] } },
    oracle: { u0: [0.9, 0.1, 0.5], u1: [0.2, 0.3, 0.4] },
  };
  await Deno.writeTextFile(`${t.dir}/s.truth.json`, JSON.stringify(good));
  assert.ok(await read());
  // a string chosen_idx is a type problem, not a range problem
  const bad = structuredClone(meta) as Record<string, { chosen_idx: unknown }[]>;
  bad.u0[0].chosen_idx = "3";
  await Deno.writeTextFile(`${t.dir}/s.json`, JSON.stringify(bad));
  await writeSafetensors(`${t.dir}/s.safetensors`, { embeddings: { data: randomArray(12 * 8, 1), shape: [12, 8] } });
  await assert.rejects(loadStore(`${t.dir}/s`), /user 'u0' entry 0: chosen_idx must be an integer row index, got "3"/);
});

Deno.test("stores: NaN/Inf rows are refused naming rows and users; a duplicated user id is refused naming it", async () => {
  await using t = await tempDir();
  const { embeddings, meta } = await tinyStore(`${t.dir}/s`, { users: 3 });
  const bad = embeddings.slice();
  bad[13 * 8 + 2] = NaN; // row 13 belongs to u1 (rows 12..23)
  bad[30 * 8] = Infinity; // row 30: u2
  await writeStore(`${t.dir}/s`, bad, 8, meta);
  await assert.rejects(loadStore(`${t.dir}/s`), /2 embedding row\(s\) hold NaN or Inf: rows 13, 30 \(users u1, u2\)/);
  // a store converted from elsewhere (no recorded JSON hash) with a duplicated user id
  await writeSafetensors(`${t.dir}/s.safetensors`, { embeddings: { data: randomArray(36 * 8, 3), shape: [36, 8] } });
  const text = JSON.stringify(meta);
  await Deno.writeTextFile(`${t.dir}/s.json`, text.replace('"u2":', '"u0":'));
  await assert.rejects(loadStore(`${t.dir}/s`), /user id "u0" appears twice/);
});

Deno.test("stores: the two files provably belong together; a JSON from another write is refused, old stores still load", async () => {
  await using t = await tempDir();
  const a = await tinyStore(`${t.dir}/a`, { users: 3 });
  await tinyStore(`${t.dir}/b`, { users: 3, pairs: 4 });
  assert.match((await loadStore(`${t.dir}/a`)).info.json_sha256, /^[0-9a-f]{64}$/);
  // a kill between the renames of a rewrite: new .json beside the old .safetensors
  await Deno.copyFile(`${t.dir}/b.json`, `${t.dir}/a.json`);
  await assert.rejects(loadStore(`${t.dir}/a`), /a\.json: is not the metadata written with the embeddings beside it/);
  // a store without the hash (converted from the release) loads as before
  await writeSafetensors(`${t.dir}/a.safetensors`, { embeddings: { data: a.embeddings, shape: [36, 8] } });
  await Deno.writeTextFile(`${t.dir}/a.json`, JSON.stringify(a.meta));
  assert.equal((await loadStore(`${t.dir}/a`)).n, 36);
});

Deno.test("a run whose loss turns NaN stops with a message and exit 2; sweep refuses a bad grid value before any run", async () => {
  await using t = await tempDir();
  await tinyStore(`${t.dir}/s`, { users: 8, pairs: 6, convs: 3, dim: 8 });
  const args = ["--preset", "prism", "--data", `${t.dir}/s`, "--epochs", "3", "--save_freq", "1"];
  const r = await task("train.ts", [...args, "--inner_lr", "1e308", "--out", `${t.dir}/run`]);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /epoch 1: the meta-loss is NaN.*training stopped.*--inner_lr 1e\+308/s);
  assert.ok(
    !(await Deno.stat(`${t.dir}/run/epoch_1.safetensors`).catch(() => false)),
    "nothing of the broken epoch saved",
  );
  const s = await task("sweep.ts", [
    "--preset",
    "prism",
    "--data",
    `${t.dir}/s`,
    "--grid",
    "inner_lr=1e-3,abc",
    "--out",
    `${t.dir}/sweep`,
  ]);
  assert.equal(s.code, 2);
  assert.match(s.err, /--grid inner_lr=abc: --inner_lr expects a number, got 'abc'/);
  assert.ok(!(await Deno.stat(`${t.dir}/sweep`).catch(() => false)), "no run started");
});

Deno.test("run folders: refused when non-empty, --overwrite empties, locked while a run writes, unique default names", async () => {
  await using t = await tempDir();
  await tinyStore(`${t.dir}/s`, { users: 8, pairs: 6, convs: 3, dim: 8 });
  const args = ["--preset", "prism", "--data", `${t.dir}/s`, "--epochs", "2", "--save_freq", "1"];
  assert.equal((await task("train.ts", [...args, "--out", `${t.dir}/run`])).code, 0);
  let r = await task("train.ts", [...args, "--epochs", "1", "--out", `${t.dir}/run`]);
  assert.equal(r.code, 2);
  assert.match(r.err, /--out .*run already holds \d+ file\(s\).*--resume .*--overwrite/);
  r = await task("train.ts", [...args, "--epochs", "1", "--out", `${t.dir}/run`, "--overwrite"]);
  assert.equal(r.code, 0, r.err);
  const names = [...Deno.readDirSync(`${t.dir}/run`)].map((e) => e.name);
  assert.ok(
    names.includes("epoch_1.safetensors") && !names.includes("epoch_2.safetensors"),
    `no stale files: ${names}`,
  );
  assert.ok(!names.includes(".lock"), "lock released");
  r = await task("train.ts", [...args, "--out="]);
  assert.equal(r.code, 2);
  assert.match(r.err, /--out needs a folder name/);
  // a live process's lock is respected; a dead one's is taken over
  await Deno.mkdir(`${t.dir}/locked`);
  await Deno.writeTextFile(`${t.dir}/locked/.lock`, String(Deno.pid));
  r = await task("train.ts", [...args, "--out", `${t.dir}/locked`]);
  assert.equal(r.code, 2);
  assert.match(r.err, new RegExp(`another run \\(pid ${Deno.pid}\\) is writing this folder`));
  await Deno.writeTextFile(`${t.dir}/locked/.lock`, "999999999");
  assert.equal((await task("train.ts", [...args, "--out", `${t.dir}/locked`])).code, 0);
  // --resume clears a killed writer's temporary files
  await Deno.writeTextFile(`${t.dir}/locked/metrics.csv.tmp-1234-0badc0de`, "partial");
  r = await task("train.ts", ["--resume", `${t.dir}/locked`]);
  assert.equal(r.code, 0, r.err);
  assert.ok(!(await Deno.stat(`${t.dir}/locked/metrics.csv.tmp-1234-0badc0de`).catch(() => false)));
  const [a, b] = [await uniqueFolder(`${t.dir}/o/x`), await uniqueFolder(`${t.dir}/o/x`)];
  assert.notEqual(a, b);
});

Deno.test("one line and exit 2 for a missing or broken run, a folder as --init, a changed store under --resume, huge layers; store writes clear old temp files", async () => {
  await using t = await tempDir();
  await tinyStore(`${t.dir}/s`, { users: 8, pairs: 6, convs: 3, dim: 8 });
  const args = ["--preset", "prism", "--data", `${t.dir}/s`, "--epochs", "1"];
  const expect2 = async (file: string, a: string[], re: RegExp) => {
    const r = await task(file, a);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, re);
    assert.equal(r.err.trim().split("\n").length, 1, `one line: ${r.err}`);
  };
  await expect2("test.ts", ["--preset", "prism", "--run", `${t.dir}/nope`], /--run .*nope: no such run folder/);
  assert.equal((await task("train.ts", [...args, "--out", `${t.dir}/r1`])).code, 0);
  assert.equal((await task("train.ts", [...args, "--out", `${t.dir}/r4`])).code, 0);
  await Deno.writeTextFile(`${t.dir}/r1/config.json`, "{bad");
  await expect2("train.ts", ["--resume", `${t.dir}/r1`], /r1\/config\.json: not valid JSON/);
  await expect2("test.ts", ["--preset", "prism", "--run", `${t.dir}/r1`], /r1\/config\.json: not valid JSON/);
  await expect2(
    "train.ts",
    [...args, "--init", t.dir, "--out", `${t.dir}/r2`],
    /is a folder; expected a checkpoint file/,
  );
  await expect2("train.ts", [...args, "--hidden_layers", "100000", "--out", `${t.dir}/r3`], /sizes above 1024/);
  // the store under a run changes width: --resume refuses
  await Deno.writeTextFile(`${t.dir}/s.safetensors.tmp-4242-deadbeef`, "left by a killed writer");
  await tinyStore(`${t.dir}/s`, { users: 8, pairs: 6, convs: 3, dim: 16 });
  assert.ok(!(await Deno.stat(`${t.dir}/s.safetensors.tmp-4242-deadbeef`).catch(() => false)), "temp file cleared");
  await expect2("train.ts", ["--resume", `${t.dir}/r4`], /the run's weights expect H=8 but the store .* has H=16/);
});

Deno.test("a file-system failure (read-only output place) ends in one line and exit 2", async () => {
  await using t = await tempDir();
  await tinyStore(`${t.dir}/s`, { users: 8, pairs: 6, convs: 3, dim: 8 });
  await Deno.mkdir(`${t.dir}/ro`);
  await Deno.chmod(`${t.dir}/ro`, 0o500);
  try {
    // root ignores permission bits; /proc is read-only for everyone
    const place = Deno.uid() === 0 ? "/proc/mrm-test-run" : `${t.dir}/ro/run`;
    const r = await task("train.ts", ["--preset", "prism", "--data", `${t.dir}/s`, "--epochs", "1", "--out", place]);
    assert.equal(r.code, 2, r.err);
    assert.equal(r.err.trim().split("\n").length, 1, r.err);
    assert.match(r.err, /^error: .*mrm-test-run|run/);
  } finally {
    await Deno.chmod(`${t.dir}/ro`, 0o700);
  }
});
