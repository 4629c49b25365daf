/**
 * A TFLOP/s table (markdown, stdout) of the GEMM bench: from the GPU-times file that
 * bench/wgsl_gemm_bench.ts writes with MRM_GEMM_GPU_TIMES (median kernel time), or from
 * `deno bench --json` output (mean wall time, which includes the submit round trip), or
 * from bench/gemm_gpu_check.ts's result file (steady-state kernel times):
 *
 *   MRM_GEMM_GPU_TIMES=gpu.json deno bench -A --json bench/wgsl_gemm_bench.ts > wall.json
 *   deno run -A bench/gemm_table.ts gpu.json
 */
const file = Deno.args[0];
if (!file) {
  console.error("usage: deno run -A bench/gemm_table.ts GPU_TIMES_OR_BENCH_JSON");
  Deno.exit(2);
}
const text = await Deno.readTextFile(file);
if (!text.trim()) {
  console.error(`${file}: empty (the bench did not finish)`);
  Deno.exit(2);
}
const data = JSON.parse(text);
const rows: [string, string, number, number][] = [];
if (Array.isArray(data.times)) {
  for (const t of data.times as { shape: string; M: number; N: number; K: number; kernel: string; ms: number }[]) {
    const gflop = 2 * t.M * t.N * t.K * (t.shape.includes("gate+up") ? 2 : 1) / 1e9;
    rows.push([`${t.shape} [${t.M}x${t.K}]x[${t.K}x${t.N}] (${gflop.toFixed(2)} GFLOP)`, t.kernel, gflop, t.ms]);
  }
} else if (Array.isArray(data.benches)) {
  for (const b of data.benches) {
    const ok = b.results?.[0]?.ok;
    if (ok) rows.push([b.group, b.name, Number(/\(([\d.]+) GFLOP\)/.exec(b.group ?? "")?.[1]), ok.avg / 1e6]);
  }
} else {
  for (const [key, v] of Object.entries(data as Record<string, { gflop: number; ms: number[] }>)) {
    const [group, name] = key.split(" | ");
    const sorted = [...v.ms].sort((a, b) => a - b);
    rows.push([group, name, v.gflop, sorted[Math.floor(sorted.length / 2)]]);
  }
}
console.log(`| shape | kernel | ms | TFLOP/s |\n|---|---|---|---|`);
for (const [group, name, gflop, ms] of rows) {
  console.log(`| ${group} | ${name} | ${ms.toFixed(3)} | ${(gflop / ms).toFixed(1)} |`);
}
