/** The CLI tasks, run as users run them (subprocesses). */
import assert from "node:assert/strict";
import { writeSynthetic } from "../lib/data/synthetic.ts";
import { splitUsers } from "../lib/data/splits.ts";
import { loadStore } from "../lib/store/store.ts";
import { tempDir } from "./helpers.ts";

const root = new URL("..", import.meta.url).pathname;

async function task(file: string, args: string[], cwd = root): Promise<{ code: number; out: string; err: string }> {
  const p = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${root}tasks/${file}`, ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
  });
  const r = await p.output();
  return { code: r.code, out: new TextDecoder().decode(r.stdout), err: new TextDecoder().decode(r.stderr) };
}

Deno.test("train: a missing store says what is missing and which command makes it", async () => {
  await using t = await tempDir();
  const r = await task("train.ts", ["--preset", "prism"], t.dir);
  assert.equal(r.code, 2);
  assert.match(
    r.err,
    /no embedding store at 'data\/emb\/prism\/V2': missing data\/emb\/prism\/V2\.safetensors \(or \.pt\) and data\/emb\/prism\/V2\.json\. Create it with `deno task preprocess:prism`/,
  );
  const r2 = await task("train.ts", ["--preset", "reddit", "--meta_json", "x/y.json", "--embed_pt", "x/z.pt"], t.dir);
  assert.match(r2.err, /name different stores/);
});

Deno.test("train: bad flags are refused naming the flag", async () => {
  const cases: [string[], RegExp][] = [
    [["--inner_lr", "abc"], /--inner_lr expects a number, got 'abc'/],
    [["--epochs", "2.5"], /--epochs expects an integer/],
    [["--hidden_layers", "2,x"], /--hidden_layers expects positive integers/],
    [["--val_ratio", "1.5"], /--val_ratio must be in \(0, 1\)/],
    [["--backend", "tpu"], /--backend must be auto, cpu, wasm or webgpu/],
    [["--gpu_store_gib", "0"], /--gpu_store_gib expects a positive number of GiB, got '0'/],
    [["--transductive"], /--transductive applies to --method mrm-p only/],
    [["--gpu_store_gib", "lots"], /--gpu_store_gib expects a positive number of GiB, got 'lots'/],
    [["--nonsense", "1"], /unknown flag '--nonsense' \(see --help\)/],
    [["--inner-lr", "1"], /unknown flag '--inner-lr'; did you mean --inner_lr\?/],
  ];
  for (const [args, re] of cases) {
    const r = await task("train.ts", ["--preset", "prism", ...args]);
    assert.equal(r.code, 2, args.join(" "));
    assert.match(r.err, re);
  }
});

Deno.test("train --help lists every release flag with its preset default", async () => {
  const r = await task("train.ts", ["--preset", "reddit", "--help"]);
  for (
    const f of [
      "--inner_lr",
      "--meta_lr",
      "--train_inner_epochs",
      "--eval_inner_epochs",
      "--tasks_per_batch",
      "--epochs",
      "--warmup_ratio",
      "--seed",
      "--val_ratio",
      "--log_freq",
      "--save_freq",
      "--seen_train_limit",
      "--unseen_train_limit",
      "--rpo_ratio",
      "--rpo_gamma",
      "--hidden_layers",
      "--use_bias",
      "--repeat",
      "--data",
      "--out",
      "--init",
      "--resume",
      "--backend",
      "--gpu_store_gib",
      "--first_order",
    ]
  ) {
    assert.ok(r.out.includes(f), `missing ${f}`);
  }
  assert.match(r.out, /--seen_train_limit\s+.*\(default 150\)/);
  assert.match(r.out, /--inner_lr\s+.*\(default 0\.005\)/);
});

Deno.test("demo and test: bad numbers and training-only flags are refused before anything is written", async () => {
  await using t = await tempDir();
  for (const [flag, value] of [["--epochs", "abc"], ["--users", "2.5"], ["--dim", "0"]]) {
    const r = await task("demo.ts", [flag, value], t.dir);
    assert.equal(r.code, 2);
    assert.match(r.err, new RegExp(`${flag} expects an integer`));
  }
  assert.deepEqual([...Deno.readDirSync(t.dir)], [], "demo wrote files before refusing its flags");
  const r = await task("test.ts", ["--meta_lr", "1"], t.dir);
  assert.equal(r.code, 2);
  assert.match(r.err, /unknown flag '--meta_lr'/);
  const help = await task("test.ts", ["--help"], t.dir);
  assert.match(help.out, /--eval_inner_epochs/);
  assert.doesNotMatch(help.out, /--meta_lr|--tasks_per_batch|--rpo_ratio/);
});

Deno.test("synth -> train (repeat 2) -> test -> splits, end to end through the CLI", async () => {
  await using t = await tempDir();
  const prefix = `${t.dir}/s`;
  let r = await task("synth.ts", ["--users", "30", "--dim", "8", "--out", prefix]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /30 users/);
  // a second synth onto the same prefix is refused (the default prefix is the demo's store) unless --overwrite
  const again = await task("synth.ts", ["--users", "30", "--dim", "8", "--out", prefix]);
  assert.equal(again.code, 2);
  assert.match(again.err, /a store already exists at .* --overwrite/);
  assert.equal((await task("synth.ts", ["--users", "30", "--dim", "8", "--out", prefix, "--overwrite"])).code, 0);
  r = await task("train.ts", [
    "--preset",
    "synthetic",
    "--data",
    prefix,
    "--epochs",
    "2",
    "--log_freq",
    "1",
    "--repeat",
    "2",
    "--out",
    `${t.dir}/run`,
  ]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /2 seeds \(42\.\.43\), mean ± std/);
  assert.match(r.out, /oracle \(true reward\)/);
  const rep = JSON.parse(await Deno.readTextFile(`${t.dir}/run/repeat.json`));
  assert.deepEqual(rep.seeds, [42, 43]);
  r = await task("test.ts", ["--preset", "synthetic", "--run", `${t.dir}/run/seed_42`]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /MRM\s+\d/);
  r = await task("test.ts", ["--preset", "synthetic", "--run", `${t.dir}/run/seed_42`, "--seen_train_limit", "1"]);
  assert.match(r.err, /WARNING: --seen_train_limit differ from training/);
  r = await task("splits.ts", ["--data", prefix, "--dataset", "prism", "--seed", "43"]);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(JSON.parse(r.out), splitUsers((await loadStore(prefix)).meta, "prism", { seed: 43 }));
});

Deno.test("train --resume continues an interrupted run folder through the CLI", async () => {
  await using t = await tempDir();
  const prefix = `${t.dir}/s`;
  await writeSynthetic(prefix, { preset: "prism", users: 20, dim: 8, seed: 2 });
  const run = `${t.dir}/run`;
  let r = await task("train.ts", [
    "--preset",
    "synthetic",
    "--data",
    prefix,
    "--epochs",
    "3",
    "--save_freq",
    "1",
    "--out",
    run,
  ]);
  assert.equal(r.code, 0, r.err);
  r = await task("train.ts", ["--preset", "synthetic", "--resume", run]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /resuming .* after epoch 3/);
  r = await task("train.ts", ["--preset", "synthetic", "--resume", `${t.dir}/nope`]);
  assert.equal(r.code, 2);
  assert.match(r.err, /not a run folder/);
});

Deno.test("train --method mrm-p -> test: its own defaults, the prior in the checkpoint, test:* reproduces the last evaluation", async () => {
  await using t = await tempDir();
  const prefix = `${t.dir}/r`;
  let r = await task("synth.ts", ["--preset", "reddit", "--users", "12", "--dim", "16", "--out", prefix]);
  assert.equal(r.code, 0, r.err);
  r = await task("train.ts", ["--preset", "reddit", "--data", prefix, "--method", "mrm-p", "--out", `${t.dir}/run`]);
  assert.equal(r.code, 0, r.err);
  const cfg = JSON.parse(await Deno.readTextFile(`${t.dir}/run/config.json`));
  // flags not named take mrm-p's defaults; the preset's split settings stay
  assert.equal(cfg.method, "mrm-p");
  assert.deepEqual(cfg.hiddenSizes, [4]);
  assert.equal(cfg.seenTrainLimit, 150);
  const last = JSON.parse(await Deno.readTextFile(`${t.dir}/run/summary.json`)).last;
  r = await task("test.ts", ["--preset", "reddit", "--run", `${t.dir}/run`, "--out", `${t.dir}/u.csv`]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /mrm-p\s+\d/);
  const m = /mrm-p\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)/.exec(r.out)!;
  assert.equal(Number(m[3]), Number((100 * last.overall_acc).toFixed(1)));
  // a named flag wins over mrm-p's default
  r = await task("train.ts", [
    "--preset",
    "reddit",
    "--data",
    prefix,
    "--method",
    "mrm-p",
    "--hidden_layers",
    "3",
    "--epochs",
    "1",
    "--out",
    `${t.dir}/run2`,
  ]);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(JSON.parse(await Deno.readTextFile(`${t.dir}/run2/config.json`)).hiddenSizes, [3]);
  r = await task("train.ts", ["--data", prefix, "--method", "mrm-p", "--hidden_layers", "4,2", "--out", `${t.dir}/x`]);
  assert.equal(r.code, 2);
  assert.match(r.err, /--hidden_layers: mrm-p uses one layer/);
  r = await task("train.ts", ["--data", prefix, "--method", "mrm-p", "--shrink", "-1", "--out", `${t.dir}/y`]);
  assert.equal(r.code, 2);
  assert.match(r.err, /--shrink must be a number >= 0, got -1/);
  await assert.rejects(Deno.stat(`${t.dir}/y`), "nothing is written for a refused flag");
});
