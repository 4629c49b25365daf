/**
 * GPU check of the Hugging Face encoder path at real size: loads a model folder made by
 * tests/fixtures/hf/make_gpu_model.py through HfEngine and compares its last-token
 * hidden states and scores with transformers' (the refs file), reporting load time, peak
 * memory and tokens/s. Run on the GPU machine (see the README, "Reproducing the GPU
 * checks"):
 *
 *   deno run -A bench/hf_gpu_check.ts --model /tmp/model --refs refs.json --out result.json \
 *     --configs webgpu:f16,webgpu:f32,wasm:f32
 *
 * Configs: `wgsl` (this toolkit's WGSL engine), `wgsl+k32` / `wgsl+n256` (the same with
 * larger GEMM tiles, see TILE_VARIANTS), `wgsl+f16` (f16 GEMM arithmetic), `wgsl+db` (every
 * GEMM tile double-buffered), `wgsl+prev` (the first kernels: strided loads, 16-deep
 * slices); variants combine, as in `wgsl+f16+prev`; `webgpu:f16|f32` and
 * `wasm:f32` (onnxruntime-web).
 */
import { parseArgs } from "node:util";
import { HfEngine } from "../lib/encoder/hf/engine.ts";
import { WebGpuEngine } from "../lib/encoder/webgpu/engine.ts";
import {
  doubleBuffered,
  GEMM_TILES,
  type GemmTile,
  LARGE_GEMM_TILES,
  strided,
  SWIGLU_TILES,
  tileName,
} from "../lib/encoder/webgpu/shaders.ts";
import type { Precision } from "../lib/encoder/hf/graph.ts";

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    refs: { type: "string" },
    out: { type: "string" },
    configs: { type: "string", default: "webgpu:f16" },
    batches: { type: "string", default: "1,4,8" },
    "wasm-seqs": { type: "string", default: "1" },
    /** at most this many sequences for speed runs, and stop a config's runs after this many seconds */
    "max-seqs": { type: "string", default: "96" },
    "budget-s": { type: "string", default: "90" },
    /** the WGSL engine's tile rule threshold */
    "min-wg": { type: "string", default: "256" },
  },
});
// deno-lint-ignore no-explicit-any
const adapter = await (navigator as any).gpu?.requestAdapter();
const adapterInfo = adapter
  ? {
    vendor: adapter.info?.vendor,
    architecture: adapter.info?.architecture,
    device: adapter.info?.device,
    description: adapter.info?.description,
    f16: adapter.features.has("shader-f16"),
    // every feature (is `subgroups` there?) and the workgroup-memory limit the GEMM tiles need
    features: [...adapter.features].sort(),
    subgroupSizes: [adapter.info?.subgroupMinSize, adapter.info?.subgroupMaxSize],
    maxBufferSize: adapter.limits.maxBufferSize,
    maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: adapter.limits.maxComputeInvocationsPerWorkgroup,
  }
  : null;
console.log("adapter:", JSON.stringify(adapterInfo));
const refs = JSON.parse(await Deno.readTextFile(values.refs!));
const seqs: number[][] = refs.sequences.slice(0, Number(values["max-seqs"]));
const checked = refs.float32.length;
let peakRss = 0;
const sample = () => (peakRss = Math.max(peakRss, Deno.memoryUsage().rss));
const timer = setInterval(sample, 200);

function compare(rows: Float32Array, scores: Float32Array, ref: { hidden: number[]; score: number }[], H: number) {
  let maxRel = 0, maxScore = 0, minCos = 1;
  ref.forEach((r, i) => {
    let diff = 0, scale = 0, dot = 0, na = 0, nb = 0;
    r.hidden.forEach((v, j) => {
      const o = rows[i * H + j];
      diff = Math.max(diff, Math.abs(o - v));
      scale = Math.max(scale, Math.abs(v));
      dot += o * v;
      na += o * o;
      nb += v * v;
    });
    maxRel = Math.max(maxRel, diff / scale);
    minCos = Math.min(minCos, dot / Math.sqrt(na * nb));
    maxScore = Math.max(maxScore, Math.abs(scores[i] - r.score) / Math.max(1, Math.abs(r.score)));
  });
  return { maxRelHidden: maxRel, minCosine: minCos, maxRelScore: maxScore };
}

const results: Record<string, unknown>[] = [];
/**
 * Tile candidates the WGSL engine does not use by default, for `wgsl+NAME` configs: timed
 * end to end next to the default rule in the same process (plain GEMMs only).
 */
const TILE_VARIANTS: Record<string, GemmTile[]> = {
  // the 128 x 128 tile with a 32-deep k-slice instead of 16
  k32: [LARGE_GEMM_TILES.k32, ...GEMM_TILES.slice(1)],
  // 128 x 256 tiles first, where the product is large enough
  n256: [LARGE_GEMM_TILES.n256, ...GEMM_TILES],
};

for (const c of values.configs!.split(",")) {
  const [spec, p] = c.split(":") as [string, Precision];
  const [device, ...variants] = spec.split("+") as ["wasm" | "webgpu" | "wgsl", ...string[]];
  const row: Record<string, unknown> = {
    device: spec,
    precision: p ?? "f32 (checkpoint weights widened in the shader)",
  };
  results.push(row);
  try {
    const t0 = performance.now();
    let engine: HfEngine | WebGpuEngine;
    if (device === "wgsl") {
      const e = await WebGpuEngine.load(values.model!, {
        profile: true,
        minWorkgroups: Number(values["min-wg"]),
        gemmArith: variants.includes("f16") ? "f16" : "f32",
      });
      e.profiling = false;
      // `prev`: the first kernels (strided loads, 16-deep slices for f16 too), to time against in one process
      if (variants.includes("prev")) e.tiles = { plain: strided(GEMM_TILES), swiglu: strided(SWIGLU_TILES) };
      for (const variant of variants.filter((v) => !["f16", "db", "coop", "prev"].includes(v))) {
        if (!TILE_VARIANTS[variant]) throw new Error(`unknown tile variant ${variant}`);
        e.tiles = { plain: TILE_VARIANTS[variant], swiglu: e.tiles.swiglu };
      }
      // `db`: every tile double-buffered (one barrier per k-slice), plain and SwiGLU
      if (variants.includes("db")) {
        e.tiles = { plain: doubleBuffered(e.tiles.plain), swiglu: doubleBuffered(e.tiles.swiglu) };
      }
      row.gemmArith = e.gemmArith;
      row.loadSeconds = e.loadSeconds;
      row.tiles = { plain: e.tiles.plain.map(tileName), swiglu: e.tiles.swiglu.map(tileName) };
      row.minWorkgroups = e.minWorkgroups;
      row.attentionKeys = e.attentionKeys;
      row.adapter = e.adapterName;
      engine = e;
    } else {
      const e = await HfEngine.load(values.model!, {
        device,
        precision: { weights: p, compute: p },
        log: () => {},
      });
      row.convertSeconds = e.loadSeconds.convert;
      row.sessionSeconds = e.loadSeconds.session;
      row.conversion = e.manifest.stats;
      engine = e;
    }
    row.loadSeconds = (performance.now() - t0) / 1000;
    const budget = Number(values["budget-s"]) * 1000, started = performance.now();
    const use = device === "wasm" ? seqs.slice(0, Number(values["wasm-seqs"])) : seqs.slice(0, checked);
    const H = engine.spec.hidden;
    // batch 1: accuracy against transformers, then speed (the first pass compiles shaders)
    const rows = new Float32Array(use.length * H), scores = new Float32Array(use.length);
    let t1 = performance.now();
    for (const [i, s] of use.entries()) {
      const out = await engine.run([s]);
      rows.set(out.rows, i * H);
      scores[i] = out.logits![0];
      if (i === 0) {
        row.firstPassSeconds = (performance.now() - t1) / 1000;
        t1 = performance.now();
      }
    }
    const tokens = use.slice(1).reduce((a, s) => a + s.length, 0);
    if (use.length > 1) row.tokensPerSecondBatch1 = tokens / ((performance.now() - t1) / 1000);
    row.vsFloat32 = compare(rows, scores, refs.float32.slice(0, use.length), H);
    row.vsBfloat16 = compare(rows, scores, refs.bfloat16.slice(0, use.length), H);
    console.log(JSON.stringify(row));
    if (device !== "wasm") {
      // speed on the same length-sorted sequences transformers was timed on (as many as the budget allows)
      const sorted = [...seqs].sort((a, b) => a.length - b.length);
      const perBatch: Record<string, number> = {};
      for (const b of values.batches!.split(",").map(Number)) {
        const t = performance.now();
        let tokens = 0;
        for (let i = 0; i < sorted.length; i += b) {
          const part = sorted.slice(i, i + b);
          await engine.run(part);
          tokens += part.reduce((a, s) => a + s.length, 0);
          if (performance.now() - started > budget) break;
        }
        perBatch[b] = tokens / ((performance.now() - t) / 1000);
        if (performance.now() - started > budget) break;
      }
      row.tokensPerSecondByBatch = perBatch;
      if (engine instanceof WebGpuEngine) row.tileUse = engine.tileUse;
      if (engine instanceof WebGpuEngine && engine.canProfile) {
        // where the time goes: one profiled pass over a 1024-token-ish batch
        engine.profiling = true;
        const part = sorted.filter((s) => s.length <= 1100).slice(-1);
        await engine.run(part);
        const prof = engine.profile();
        const total = Object.values(prof).reduce((a, v) => a + v.seconds, 0);
        row.profileTokens = part[0]?.length;
        row.profile = Object.fromEntries(
          Object.entries(prof).map(([k, v]) => [k, { ms: v.seconds * 1000, share: v.seconds / total, calls: v.calls }]),
        );
        engine.profiling = false;
      }
    }
    await engine.dispose();
  } catch (e) {
    row.error = String((e as Error)?.stack ?? e);
  }
  sample();
  row.peakRssGiB = peakRss / 2 ** 30;
  console.log(JSON.stringify(row));
  await Deno.writeTextFile(
    values.out!,
    JSON.stringify(
      { refsShape: refs.shape, gpu: refs.gpu, adapter: adapterInfo, transformers: refs.tokens_per_s, results },
      null,
      1,
    ),
  );
}
clearInterval(timer);
