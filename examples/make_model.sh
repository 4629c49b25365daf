#!/usr/bin/env bash
# Makes examples/model.safetensors, the small mrm-p checkpoint the README's library example loads:
# a PRISM-like synthetic store (300 users, H=16) and a meta-trained mrm-p model on it.
set -eu
tmp=$(mktemp -d)
deno task synth --preset prism --users 300 --dim 16 --seed 7 --out "$tmp/store"
deno task train:synthetic --data "$tmp/store" --method mrm-p --out "$tmp/run"
cp "$tmp/run/best.safetensors" examples/model.safetensors
rm -rf "$tmp"
