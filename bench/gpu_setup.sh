#!/usr/bin/env bash
# Sourced by the GPU-machine scripts (bench/hf_gpu_check.sh, bench/train_gpu_check.sh):
# unpacks the Vulkan/GL loaders (.gl/*.deb, Debian packages), the deno binary
# (.devcarry/gpu/deno.xz, to /tmp/deno) and node_modules (.devcarry/gpu/nm.tar.xz), all
# offline. Deno's WebGPU adapter needs libvulkan1 and the driver's libraries.
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export LD_LIBRARY_PATH=/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export PYTHONUNBUFFERED=1
[ -x /tmp/deno ] || { xz -dc .devcarry/gpu/deno.xz >/tmp/deno && chmod +x /tmp/deno; }
[ -d node_modules/.deno/@tensorflow+tfjs-core@4.22.0 ] || tar xJf .devcarry/gpu/nm.tar.xz
