/**
 * Turns `deno bench --json bench/wgsl_gemm_bench.ts` output into TFLOP/s per shape and
 * kernel (a markdown table on stdout):
 *
 *   deno bench -A --json bench/wgsl_gemm_bench.ts > gemm.json && deno run -A bench/gemm_table.ts gemm.json
 */
const file = Deno.args[0];
if (!file) {
  console.error("usage: deno run -A bench/gemm_table.ts BENCH_JSON");
  Deno.exit(2);
}
const text = await Deno.readTextFile(file);
if (!text.trim()) {
  console.error(`${file}: empty (the bench did not finish)`);
  Deno.exit(2);
}
const report = JSON.parse(text);
console.log("| shape | kernel | ms | TFLOP/s |\n|---|---|---|---|");
for (const b of report.benches) {
  const gflop = Number(/\(([\d.]+) GFLOP\)/.exec(b.group ?? "")?.[1]);
  const ok = b.results?.[0]?.ok;
  if (!ok) continue;
  const ms = ok.avg / 1e6;
  console.log(`| ${b.group} | ${b.name} | ${ms.toFixed(3)} | ${(gflop / ms / 1000).toFixed(2)} |`);
}
