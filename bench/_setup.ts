/** Shared bench fixtures: a PRISM-size synthetic store built in memory, peak-memory readout. */
import { generateSynthetic } from "../lib/data/synthetic.ts";
import type { EmbeddingStore } from "../lib/store/store.ts";

/** 1000 users, H=4096, 6-30 conversations of 1-3 pairs each (the PRISM-size store). */
export function prismSizeStore(users = 1000, dim = 4096): EmbeddingStore {
  const { embeddings, meta } = generateSynthetic({ preset: "prism", users, dim, seed: 1 });
  return { prefix: "bench:prism-size", embeddings, n: embeddings.length / dim, dim, meta, info: {} };
}

/** Peak resident set size of this process in bytes (Linux VmHWM), or NaN elsewhere. */
export function peakRss(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}
