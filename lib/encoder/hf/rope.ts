/**
 * Rotary position embedding tables, computed the way transformers computes them: in
 * float32 arithmetic (every step rounded with Math.fround), so that the angles of late
 * positions carry the same rounding as the reference.
 */
import type { RopeSpec } from "./config.ts";

const f = Math.fround;

/** Inverse frequencies (headDim / 2 values), with Llama-3.1's band scaling when configured. */
export function inverseFrequencies(rope: RopeSpec, headDim: number): Float32Array {
  const half = headDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = f(1 / f(Math.pow(rope.theta, f(f(2 * i) / headDim))));
  if (rope.type === "default") return inv;
  const { factor, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositions: old } = rope;
  const lowWavelen = old / lo, highWavelen = old / hi;
  for (let i = 0; i < half; i++) {
    const wavelen = f(f(2 * Math.PI) / inv[i]);
    const scaled = wavelen > lowWavelen ? f(inv[i] / factor) : inv[i];
    if (wavelen < highWavelen || wavelen > lowWavelen) {
      inv[i] = scaled;
      continue;
    }
    const smooth = f(f(f(old / wavelen) - lo) / (hi - lo));
    inv[i] = f(f(f(f(1 - smooth) * scaled) / factor) + f(smooth * scaled));
  }
  return inv;
}

/** cos and sin tables [T, headDim] for positions 0..T-1 (each half repeated, as `rotate_half` expects). */
export function ropeTables(inv: Float32Array, T: number): { cos: Float32Array; sin: Float32Array } {
  const half = inv.length, d = 2 * half;
  const cos = new Float32Array(T * d), sin = new Float32Array(T * d);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      const a = f(inv[i] * t);
      const c = Math.cos(a), s = Math.sin(a);
      cos[t * d + i] = cos[t * d + half + i] = c;
      sin[t * d + i] = sin[t * d + half + i] = s;
    }
  }
  return { cos, sin };
}
