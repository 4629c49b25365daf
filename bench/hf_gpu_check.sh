#!/usr/bin/env bash
# The GPU check of the Hugging Face encoder paths (README: "Reproducing the GPU checks").
# Runs on the GPU machine from the repository root, offline:
#   bench/hf_gpu_check.sh OUTDIR "SHAPE@CONFIGS[@MAXSEQS] ..."
# e.g. bench/hf_gpu_check.sh /tmp/out "qwen3-0.6b@wgsl,webgpu:f16 llama-3.1-8b@wgsl@8"
# Environment: GEMM_CHECK=1 first runs bench/gemm_gpu_check.ts (the GEMM kernels alone:
# variants checked against float64 and timed in steady state; OUTDIR/gemm.json); GEMM_BENCH=1 runs bench/wgsl_gemm_bench.ts (table in OUTDIR/gemm_table.md);
# BATCHES (1,4,8), BUDGET_S (60) and DENO_LIMIT (240) shape the timed runs.
# Needs: .devcarry/gpu/deno.xz (the deno binary, xz), .devcarry/gpu/nm.tar.xz (node_modules
# with tfjs, onnxruntime-web, onnx-proto and their dependencies), .gl/*.deb (Vulkan and GL
# loaders from Debian); bench/gpu_setup.sh unpacks them. Each shape's model is made by tests/fixtures/hf/make_gpu_model.py.
set -u
out=${1:?output folder}; plan=${2:-"qwen3-0.6b@wgsl,webgpu:f16"}
mkdir -p "$out"
. bench/gpu_setup.sh
if [ -n "${GEMM_CHECK:-}" ]; then
  timeout "${GEMM_LIMIT:-180}" /tmp/deno run -A ${DENO_FLAGS:-} --no-check --node-modules-dir=manual bench/gemm_gpu_check.ts \
    --out "$out/gemm.json" ${GEMM_ARGS:-} 2>&1 | tee "$out/gemm.log"
fi
if [ -n "${GEMM_BENCH:-}" ]; then
  # the GEMM alone, every tile, next to onnxruntime-web's MatMul (bench/wgsl_gemm_bench.ts)
  # (ours and onnxruntime-web's in two runs, so that slow session creation cannot starve ours)
  for which in wgsl ort; do
    MRM_GEMM_BENCH=$which MRM_GEMM_GPU_TIMES="$out/gemm_gpu_times.json" timeout "${GEMM_LIMIT:-120}" /tmp/deno bench \
      -A --no-check --node-modules-dir=manual --json bench/wgsl_gemm_bench.ts >"$out/gemm_$which.json" 2>"$out/gemm_$which.err"
    /tmp/deno run -A --no-config bench/gemm_table.ts "$out/gemm_$which.json" >"$out/gemm_${which}_wall.md"
  done
  /tmp/deno run -A --no-config bench/gemm_table.ts "$out/gemm_gpu_times.json" | tee "$out/gemm_gpu.md"
fi
mem() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 250 >"$out/gpumem_$1.txt" & }
for item in $plan; do
  IFS=@ read -r shape configs maxseqs <<<"$item"
  mem "torch_$shape"; p=$!
  python3 tests/fixtures/hf/make_gpu_model.py --shape "$shape" --out "/tmp/$shape" --refs "/tmp/refs_$shape.json"
  kill $p
  du -sh "/tmp/$shape"
  mem "deno_$shape"; p=$!
  timeout "${DENO_LIMIT:-240}" /tmp/deno run -A --node-modules-dir=manual bench/hf_gpu_check.ts \
    --model "/tmp/$shape" --refs "/tmp/refs_$shape.json" --out "$out/result_$shape.json" \
    --configs "$configs" --max-seqs "${maxseqs:-96}" --budget-s "${BUDGET_S:-60}" --batches "${BATCHES:-1,4,8}"
  kill $p
  rm -rf "/tmp/$shape"
done
for f in "$out"/gpumem_*.txt; do echo "$f peak MiB: $(sort -n "$f" | tail -1) first: $(head -1 "$f")"; done
