/**
 * Layers 2..n of the base functions, all small: z = B y with B = W_n ... W_2
 * (K x h1), y the first layer's output. Biases cancel in chosen - rejected.
 */
import { INPUT_SCALE, type MrmParams } from "./params.ts";

/** B = W_n ... W_2 as a K x h1 float64 matrix (identity for one layer). */
export function headMatrix(p: MrmParams): Float64Array {
  const h1 = p.layers[0].out;
  let b: Float64Array = new Float64Array(h1 * h1);
  for (let i = 0; i < h1; i++) b[i * h1 + i] = 1;
  let rows = h1;
  for (let li = 1; li < p.layers.length; li++) {
    const l = p.layers[li];
    const nb = new Float64Array(l.out * h1);
    for (let o = 0; o < l.out; o++) {
      for (let j = 0; j < h1; j++) {
        let s = 0;
        for (let i = 0; i < l.in; i++) s += l.weight[o * l.in + i] * b[i * h1 + j];
        nb[o * h1 + j] = s;
      }
    }
    b = nb;
    rows = l.out;
  }
  void rows;
  return b;
}

function matmul(a: Float64Array, b: Float64Array, n: number, k: number, m: number): Float64Array {
  const c = new Float64Array(n * m);
  for (let i = 0; i < n; i++) {
    for (let t = 0; t < k; t++) {
      const av = a[i * k + t];
      if (av === 0) continue;
      for (let j = 0; j < m; j++) c[i * m + j] += av * b[t * m + j];
    }
  }
  return c;
}

function transpose(a: Float64Array, n: number, m: number): Float64Array {
  const t = new Float64Array(n * m);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) t[j * n + i] = a[i * m + j];
  return t;
}

/**
 * Gradients of layers 2..n from G_B = dL/dB (K x h1): for B = W_n...W_2,
 * dL/dW_i = (W_n...W_{i+1})^T G_B (W_{i-1}...W_2)^T. Index i-1 of the result is layer i.
 */
export function headGrads(p: MrmParams, gB: Float64Array): Float64Array[] {
  const n = p.layers.length, h1 = p.layers[0].out;
  const out: Float64Array[] = [];
  for (let i = 1; i < n; i++) {
    // left = W_n...W_{i+1} (K x out_i), right = W_{i-1}...W_2 (in_i x h1)
    const li = p.layers[i];
    let left: Float64Array = new Float64Array(li.out * li.out);
    for (let a = 0; a < li.out; a++) left[a * li.out + a] = 1;
    let leftRows = li.out;
    for (let j = i + 1; j < n; j++) {
      const lj = p.layers[j];
      left = matmul(Float64Array.from(lj.weight), left, lj.out, lj.in, li.out);
      leftRows = lj.out;
    }
    let right: Float64Array = new Float64Array(h1 * h1);
    for (let a = 0; a < h1; a++) right[a * h1 + a] = 1;
    for (let j = 1; j < i; j++) {
      const lj = p.layers[j];
      right = matmul(Float64Array.from(lj.weight), right, lj.out, lj.in, h1);
    }
    // dW_i = left^T (out_i x K) G_B (K x h1) right^T (h1 x in_i)
    const lt = transpose(left, leftRows, li.out);
    const t1 = matmul(lt, gB, li.out, leftRows, h1);
    out.push(matmul(t1, transpose(right, li.in, h1), li.out, h1, li.in));
  }
  return out;
}

/** Base-function outputs phi(x) (n x K, biases included) of rows X (n x H). */
export function baseOutputs(p: MrmParams, x: Float32Array, n: number): Float64Array {
  const K = p.layers[p.layers.length - 1].out;
  const out = new Float64Array(n * K);
  for (let row = 0; row < n; row++) {
    let h: Float64Array = Float64Array.from(x.subarray(row * p.dim, (row + 1) * p.dim), (v) => v * INPUT_SCALE);
    for (const l of p.layers) {
      const o = new Float64Array(l.out);
      for (let a = 0; a < l.out; a++) {
        let acc = l.bias ? l.bias[a] : 0;
        for (let i = 0; i < l.in; i++) acc += l.weight[a * l.in + i] * h[i];
        o[a] = acc;
      }
      h = o;
    }
    out.set(h, row * K);
  }
  return out;
}
