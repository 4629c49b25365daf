/** Shared bench fixtures: a PRISM-size synthetic store built in memory, peak-memory readout. */
import { generateSynthetic } from "../lib/data/synthetic.ts";
import type { EmbeddingStore } from "../lib/store/store.ts";

/** 1000 users, H=4096, 6-30 conversations of 1-3 pairs each (the PRISM-size store). */
export function prismSizeStore(users = 1000, dim = 4096): EmbeddingStore {
  const { embeddings, meta } = generateSynthetic({ preset: "prism", users, dim, seed: 1 });
  return { prefix: "bench:prism-size", embeddings, n: embeddings.length / dim, dim, meta, info: {} };
}

/**
 * A store of the same users and pairs as prismSizeStore(users) would have (the
 * generator's layout at H = 16), its rows filled with pseudo-random values in [-5, 5)
 * (a block of a prime length, repeated): for timings at sizes where the generator's
 * Gaussian draws would take minutes (10,000 users at H = 4096: ~2.2e9 values). The
 * values carry no preferences, so accuracies on it mean nothing.
 */
export function timingStore(users: number, dim = 4096): EmbeddingStore {
  const { meta, embeddings: small } = generateSynthetic({ preset: "prism", users, dim: 16, seed: 1 });
  const n = small.length / 16, embeddings = new Float32Array(n * dim);
  const block = Math.min(embeddings.length, 1_048_573);
  let x = 2463534242;
  for (let i = 0; i < block; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    embeddings[i] = ((x >>> 0) / 2 ** 32) * 10 - 5;
  }
  for (let have = block; have < embeddings.length; have *= 2) embeddings.copyWithin(have, 0, have);
  return { prefix: "bench:timing", embeddings, n, dim, meta, info: {} };
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
