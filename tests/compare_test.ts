/** `deno task compare` and `deno task sweep` through the CLI, on a small synthetic store. */
import assert from "node:assert/strict";
import { writeSynthetic } from "../lib/data/synthetic.ts";
import { parseCsv } from "../lib/run/csv.ts";
import { cartesian, parseGrid } from "../lib/compare/sweep.ts";
import { runTask, tempDir } from "./helpers.ts";

const task = (file: string, args: string[]) => runTask(file, args);

Deno.test("compare: every method on the same users, exact results header, users, charts, few-shot", async () => {
  await using t = await tempDir();
  const prefix = `${t.dir}/s`;
  await writeSynthetic(prefix, { preset: "prism", users: 40, dim: 16, seed: 4, conversations: [10, 14] });
  const out = `${t.dir}/cmp`;
  const r = await task("compare.ts", [
    "--data",
    prefix,
    "--epochs",
    "2",
    "--repeat",
    "2",
    "--shots",
    "2,4",
    "--out",
    out,
  ]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /skipped rm: the store has no chosen_score\/rejected_score/);
  assert.match(r.out, /oracle/);
  // --backend auto (the default): each meta-trained run is given a backend, with its reason
  // (no hardware adapter here: wasm); the other methods say nothing
  assert.match(r.out, /backend auto \(wasm first\)/);
  const decisions = r.out.match(/ {3}backend wasm \(--backend auto: no hardware WebGPU adapter\)/g) ?? [];
  assert.equal(decisions.length, 2 * 4, "mrm, mrm-p, maml and mrm-fo, two seeds each");
  const res = parseCsv(await Deno.readTextFile(`${out}/results.csv`));
  assert.equal(
    res[0].slice(0, 8).join(","),
    "method,seed,seen_acc,unseen_acc,overall_acc,seen_worst10,unseen_worst10,train_seconds",
  );
  const methods = res.slice(1).map((row) => `${row[0]}/${row[1]}`);
  for (const m of ["mrm", "maml", "mrm-fo", "lore", "bt", "user"]) {
    for (const s of [42, 43]) assert.ok(methods.includes(`${m}/${s}`), `${m}/${s}`);
  }
  const users = parseCsv(await Deno.readTextFile(`${out}/users.csv`));
  const ids = (m: string) => users.filter((u) => u[0] === m && u[1] === "42").map((u) => u[2]).sort();
  assert.deepEqual(ids("bt"), ids("mrm"), "all methods are evaluated on the same users");
  for (const f of ["accuracy.svg", "users.svg", "fewshot.svg"]) {
    assert.match(await Deno.readTextFile(`${out}/${f}`), /^<svg/);
  }
  const few = parseCsv(await Deno.readTextFile(`${out}/fewshot.csv`));
  assert.ok(few.some((row) => row[0] === "oracle" && row[2] === "4"));
  assert.ok(few.some((row) => row[0] === "user" && row[2] === "2"));
});

Deno.test("compare: bad --methods and impossible --shots are refused clearly", async () => {
  await using t = await tempDir();
  const prefix = `${t.dir}/s`;
  await writeSynthetic(prefix, { preset: "prism", users: 10, dim: 8, seed: 1 });
  let r = await task("compare.ts", ["--data", prefix, "--methods", "mrm,magic"]);
  assert.equal(r.code, 2);
  assert.match(r.err, /unknown method 'magic'/);
  r = await task("compare.ts", ["--data", prefix, "--methods", "bt", "--shots", "500"]);
  assert.equal(r.code, 2);
  assert.match(r.err, /no unseen user has 500 train pairs/);
});

Deno.test("sweep: grid parsing and the cartesian product", () => {
  const g = parseGrid(["inner_lr=1e-3,1e-2", "hidden_layers=2,4-2"]);
  assert.deepEqual(g, [{ flag: "inner_lr", values: ["0.001", "0.01"] }, {
    flag: "hidden_layers",
    values: ["2", "4,2"],
  }]);
  assert.equal(cartesian(g).length, 4);
  assert.throws(() => parseGrid(["inner_lr"]), /expected key=v1,v2/);
});

Deno.test("sweep: chooses the best validation accuracy (not test), includes the release setting", async () => {
  await using t = await tempDir();
  const prefix = `${t.dir}/s`;
  await writeSynthetic(prefix, { preset: "prism", users: 30, dim: 16, seed: 6 });
  const out = `${t.dir}/sw`;
  const r = await task("sweep.ts", ["--data", prefix, "--grid", "inner_lr=0.5,2,5e-2", "--epochs", "2", "--out", out]);
  assert.equal(r.code, 0, r.err);
  const rows = parseCsv(await Deno.readTextFile(`${out}/sweep.csv`));
  const h = rows[0];
  const body = rows.slice(1);
  assert.equal(body.length, 3, "5e-2 is the release setting (0.05): run once");
  assert.ok(body.some((row) => row[h.indexOf("inner_lr")] === "0.05" && row[h.indexOf("role")].includes("release")));
  const val = body.map((row) => Number(row[h.indexOf("val_acc")]));
  const chosen = body.findIndex((row) => row[h.indexOf("role")].includes("chosen"));
  assert.equal(val[chosen], Math.max(...val));
  assert.match(r.out, /hardest 10% under release/);
  assert.match(await Deno.readTextFile(`${out}/sweep.svg`), /^<svg/);
  const noHold = await task("sweep.ts", [
    "--data",
    prefix,
    "--grid",
    "inner_lr=0.5",
    "--val_holdout",
    "0",
    "--out",
    `${t.dir}/x`,
  ]);
  assert.equal(noHold.code, 2);
  assert.match(noHold.err, /needs --val_holdout > 0/);
});

Deno.test("compare: subspace (the ceiling) and mrm-p on a Reddit-like store; mrm-p's few-shot curve rises", async () => {
  await using t = await tempDir();
  const prefix = `${t.dir}/r`;
  await writeSynthetic(prefix, { preset: "reddit", users: 16, dim: 24, seed: 5, redditPairs: [80, 20] });
  const out = `${t.dir}/cmp`;
  const r = await task("compare.ts", [
    "--data",
    prefix,
    "--preset",
    "reddit",
    "--unseen_train_limit",
    "-1",
    "--methods",
    "mrm-p,bt,subspace",
    "--shots",
    "5,80",
    "--out",
    out,
  ]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /subspace: prior strength [\d.]+ chosen on the seen users' train pairs/);
  const res = parseCsv(await Deno.readTextFile(`${out}/results.csv`));
  const overall = (m: string) => Number(res.find((row) => row[0] === m)![4]);
  assert.ok(overall("subspace") > overall("bt") + 0.05, `subspace ${overall("subspace")} vs bt ${overall("bt")}`);
  const few = parseCsv(await Deno.readTextFile(`${out}/fewshot.csv`));
  const at = (m: string, s: string) => Number(few.find((row) => row[0] === m && row[2] === s)![3]);
  assert.ok(at("mrm-p", "80") > at("mrm-p", "5"), `mrm-p few-shot ${at("mrm-p", "5")} -> ${at("mrm-p", "80")}`);
  assert.equal(at("bt", "80"), at("bt", "5"), "a shared model does not adapt");
  assert.match(await Deno.readTextFile(`${out}/table.txt`), /subspace/);
});

Deno.test("compare: subspace without a truth file is skipped with the reason", async () => {
  await using t = await tempDir();
  const prefix = `${t.dir}/r`;
  await writeSynthetic(prefix, { preset: "reddit", users: 6, dim: 8, seed: 5, redditPairs: [10, 4] });
  await Deno.remove(`${prefix}.truth.json`);
  const r = await task("compare.ts", [
    "--data",
    prefix,
    "--methods",
    "bt,subspace",
    "--epochs",
    "1",
    "--out",
    `${t.dir}/c`,
  ]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /skipped subspace: it needs a synthetic store's truth file/);
});
