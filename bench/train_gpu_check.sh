#!/usr/bin/env bash
# The GPU check of meta-training and evaluation (README: "webgpu training on a GPU"):
# bench/gpu_check.ts on the GPU machine, offline, both backends in one process.
#   bash bench/train_gpu_check.sh OUTDIR
# Environment: USERS (store sizes, 100,1000,10000 here), METHODS (mrm,mrm-p), LIMIT (s, 300).
set -u
out=${1:?output folder}
mkdir -p "$out"
. bench/gpu_setup.sh
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 250 >"$out/gpumem.txt" &
p=$!
OUT=$out SKIP_ENCODER=1 USERS=${USERS:-100,1000,10000} METHODS=${METHODS:-mrm,mrm-p} timeout "${LIMIT:-300}" \
  /tmp/deno run -A --node-modules-dir=manual bench/gpu_check.ts 2>&1 | tee "$out/gpu_check.log"
kill $p
echo "peak GPU memory MiB: $(sort -n "$out/gpumem.txt" | tail -1)"
