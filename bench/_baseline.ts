/**
 * The straightforward per-user implementation benchmarks compare against: each
 * user's rows uploaded as their own tensors, rewards and the BT gradient of theta
 * as tfjs ops, a tfjs Adam step per inner step — one round of small tensor ops per
 * user, as a direct port of the release's adapt_single_user would do.
 */
import * as tf from "@tensorflow/tfjs-core";

/** Adapts theta on (chosen, rejected) rows [n, H] with `steps` fresh Adam steps; returns theta. */
export function adaptPerUser(
  W: tf.Tensor2D,
  theta0: Float32Array,
  chosen: tf.Tensor2D,
  rejected: tf.Tensor2D,
  lr: number,
  steps: number,
): tf.Tensor1D {
  return tf.tidy(() => {
    // phi(c) - phi(r): [n, K]
    const z = tf.matMul(tf.mul(tf.sub(chosen, rejected), 0.01), W, false, true);
    let theta = tf.tensor1d(theta0);
    let m = tf.zerosLike(theta), v = tf.zerosLike(theta);
    for (let t = 1; t <= steps; t++) {
      const w = tf.softmax(theta);
      const margin = tf.sum(tf.mul(z, w), 1);
      const s = tf.neg(tf.sigmoid(tf.neg(margin)));
      const u = tf.div(tf.sum(tf.mul(z, tf.expandDims(s, 1)), 0), margin.shape[0]);
      const g = tf.mul(w, tf.sub(u, tf.sum(tf.mul(w, u))));
      m = tf.add(tf.mul(m, 0.9), tf.mul(g, 0.1));
      v = tf.add(tf.mul(v, 0.999), tf.mul(tf.square(g), 0.001));
      const mh = tf.div(m, 1 - 0.9 ** t), vh = tf.div(v, 1 - 0.999 ** t);
      theta = tf.sub(theta, tf.mul(lr, tf.div(mh, tf.add(tf.sqrt(vh), 1e-8))));
    }
    return theta as tf.Tensor1D;
  });
}

/** Fraction of rows with r(chosen) > r(rejected) under theta (tfjs ops). */
export function accuracyPerUser(
  W: tf.Tensor2D,
  theta: tf.Tensor1D,
  chosen: tf.Tensor2D,
  rejected: tf.Tensor2D,
): number {
  return tf.tidy(() => {
    const z = tf.matMul(tf.mul(tf.sub(chosen, rejected), 0.01), W, false, true);
    return tf.mean(tf.cast(tf.greater(tf.sum(tf.mul(z, tf.softmax(theta)), 1), 0), "float32")).dataSync()[0];
  });
}
