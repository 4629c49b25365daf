/**
 * What importing each entry point costs: a fresh `deno run` per iteration that imports
 * the entry (no type check), against one that imports nothing (the baseline: Deno's own
 * start-up). Each process also reports its resident memory after the import
 * (`MRM_IMPORT_MEMORY=1` prints it once per entry).
 *
 *   deno bench -A bench/import_bench.ts
 */
const ROOT = new URL("../", import.meta.url);
const ENTRIES = ["mod.ts", "data.ts", "train.ts", "compare.ts", "encoder.ts"];

async function importOnce(entry?: string): Promise<number> {
  const code = entry
    ? `await import(${JSON.stringify(new URL(entry, ROOT).href)}); console.log(Deno.memoryUsage().rss);`
    : `console.log(Deno.memoryUsage().rss);`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", "--config", new URL("deno.json", ROOT).pathname, code],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`importing ${entry} failed`);
  return Number(new TextDecoder().decode(out.stdout).trim());
}

if (Deno.env.get("MRM_IMPORT_MEMORY")) {
  for (const e of [undefined, ...ENTRIES]) {
    console.log(`${e ?? "(nothing)"}: ${((await importOnce(e)) / 2 ** 20).toFixed(0)} MiB resident after import`);
  }
}

Deno.bench({ name: "deno start-up, nothing imported", group: "import", baseline: true, n: 5, warmup: 1 }, async () => {
  await importOnce();
});
for (const e of ENTRIES) {
  Deno.bench({ name: `import ${e}`, group: "import", n: 5, warmup: 1 }, async () => {
    await importOnce(e);
  });
}
