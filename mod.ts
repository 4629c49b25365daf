/**
 * mrm: Meta Reward Modeling for personalized reward models, in Deno.
 *
 * This entry point loads a meta-trained checkpoint, adapts it to one user from a few
 * (chosen, rejected) embedding pairs, and scores responses. It is plain TypeScript with
 * no dependencies (no tfjs, ONNX, tokenizer or parquet code), and `parseCheckpoint`
 * runs in browsers and Node. Training, encoding, data and comparisons have their own
 * entry points: `@mrm/mrm/train`, `@mrm/mrm/encoder`, `@mrm/mrm/data`, `@mrm/mrm/compare`.
 *
 * @example Adapt to a user and score
 * ```ts
 * import { loadModel } from "@mrm/mrm";
 * import assert from "node:assert/strict";
 *
 * const model = await loadModel("examples/model.safetensors");
 * // the direction the model's second base reads: the one its users disagreed on most
 * const base = model.params.layers[0].weight.subarray(model.dim, 2 * model.dim);
 * const unit = Math.hypot(...base);
 * // a response embedding; `lean` is how far it goes along that direction
 * const row = (lean: number, i: number) =>
 *   Array.from({ length: model.dim }, (_, j) => 5 * Math.sin(7 * i + j) + (10 * lean * base[j]) / unit);
 * const likes = model.adapt({
 *   chosen: [0, 1, 2, 3].map((i) => row(1, i)),
 *   rejected: [0, 1, 2, 3].map((i) => row(-1, i)),
 * });
 * const dislikes = model.adapt({
 *   chosen: [0, 1, 2, 3].map((i) => row(-1, i)),
 *   rejected: [0, 1, 2, 3].map((i) => row(1, i)),
 * });
 *
 * // two new responses: the two users disagree about them
 * assert.equal(likes.prefers(row(1, 9), row(-1, 9)), true);
 * assert.equal(dislikes.prefers(row(1, 9), row(-1, 9)), false);
 * const [a, b] = likes.score([row(1, 9), row(-1, 9)]);
 * assert.ok(a > b);
 * ```
 * @module
 */
export {
  type AdaptSettings,
  loadModel,
  parseCheckpoint,
  RELEASE_ADAPTATION,
  RewardModel,
  type UserPairs,
  UserRewardModel,
} from "./lib/score.ts";
export { adaptUser, type Rows, scorePairs, scoreRows, type UserModel } from "./lib/model/user.ts";
export { isPersonal, type Layer, type MrmParams } from "./lib/model/params.ts";
export { ConfigError, FormatError } from "./lib/errors.ts";
