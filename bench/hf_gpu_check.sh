#!/usr/bin/env bash
# The GPU check of the Hugging Face encoder path (README: "Reproducing the GPU checks").
# Runs on the GPU machine from the repository root, offline:
#   bench/hf_gpu_check.sh OUTDIR [SHAPE] [CONFIGS]
# Needs: .devcarry/gpu/deno.xz (the deno binary, xz), .devcarry/gpu/nm.tar.xz (node_modules
# with onnxruntime-web, onnx-proto and their dependencies), .gl/*.deb (Vulkan and GL
# loaders from Debian). SHAPE: qwen3-0.6b (default) or llama-3.1-8b.
set -u
out=${1:?output folder}; shape=${2:-qwen3-0.6b}; configs=${3:-webgpu:f16,wasm:f32,webgpu:f32}
mkdir -p "$out"
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export LD_LIBRARY_PATH=/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export PYTHONUNBUFFERED=1
xz -dc .devcarry/gpu/deno.xz >/tmp/deno && chmod +x /tmp/deno
[ -d node_modules/.deno ] || tar xJf .devcarry/gpu/nm.tar.xz
mem() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 250 >"$out/gpumem_$1.txt" & }
mem torch; p=$!
python3 tests/fixtures/hf/make_gpu_model.py --shape "$shape" --out /tmp/model --refs "$out/refs.json"
kill $p
ls -la /tmp/model; du -sh /tmp/model
mem deno; p=$!
timeout "${DENO_LIMIT:-420}" /tmp/deno run -A --node-modules-dir=manual bench/hf_gpu_check.ts \
  --model /tmp/model --refs "$out/refs.json" --out "$out/result.json" --configs "$configs"
kill $p
for f in "$out"/gpumem_*.txt; do echo "$f peak MiB: $(sort -n "$f" | tail -1) idle: $(head -1 "$f")"; done
