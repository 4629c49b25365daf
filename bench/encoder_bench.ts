/**
 * Encoder throughput on the tiny test decoder (H=16, one block): 64 conversations
 * (~50-250 tokens each) per iteration, batch sizes 1 / 8 / 32, wasm vs the webgpu
 * EP. On this machine the WebGPU adapter is software (llvmpipe): its numbers say
 * nothing about a real GPU. tokens/s = tokens per iteration / time per iteration.
 */
import { RewardEncoder } from "../lib/encoder/encoder.ts";
import type { Message } from "../lib/data/pairs.ts";
import { writeTinyModel } from "../tests/fixtures/tiny_model.ts";

const dir = await Deno.makeTempDir({ prefix: "mrm-encoder-bench-" });
await writeTinyModel(dir);
const words = "the quick brown fox jumps over a lazy dog while summaries of reddit posts are compared by workers".split(
  " ",
);
const convs: Message[][] = Array.from({ length: 64 }, (_, i) => {
  const len = 8 + ((i * 37) % 40);
  const text = Array.from({ length: len }, (_, j) => words[(i + j * 7) % words.length]).join(" ");
  return [{ role: "user", content: `Summarize post ${i}: ${text}` }, {
    role: "assistant",
    content: text.slice(0, 40 + (i % 60)),
  }];
});
const tokens = (await RewardEncoder.load(dir, { device: "wasm", batchSize: 1 })).tokenizer;
const total = convs.reduce((s, c) => s + tokens.encode(c).length, 0);

for (const device of ["wasm", "webgpu"] as const) {
  for (const batchSize of [1, 8, 32]) {
    const enc = await RewardEncoder.load(dir, { device, batchSize });
    Deno.bench({
      name: `${device} batch ${batchSize} (${total} tokens/iter)`,
      group: device,
      baseline: batchSize === 1,
      n: device === "wasm" ? 20 : 2,
      warmup: 1,
      fn: async () => {
        await enc.encode(convs);
      },
    });
  }
}
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
