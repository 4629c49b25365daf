/**
 * Scoring with a meta-trained checkpoint: load it, adapt it to one user from a few
 * (chosen, rejected) embedding pairs, score. Plain TypeScript over the checkpoint's
 * tensors (no tfjs, no ONNX, no file API except in `loadModel`'s path form).
 */
import { ConfigError, FormatError } from "./errors.ts";
import { isPersonal, type MrmParams, paramsFromTensors } from "./model/params.ts";
import { adaptUser, type Rows, scoreRows, type UserModel } from "./model/user.ts";
import { decodeSafetensors } from "./store/safetensors.ts";
import { isTorchFile, torchTensors } from "./store/torch.ts";

/** How a model adapts to a user (MRM's inner Adam; mrm-p ignores both: its fit is exact). */
export interface AdaptSettings {
  /** inner Adam learning rate */
  innerLr: number;
  /** inner Adam steps */
  innerSteps: number;
}

/** The release's settings (one Adam step at 1e-3), for checkpoints saved without a config. */
export const RELEASE_ADAPTATION: AdaptSettings = { innerLr: 1e-3, innerSteps: 1 };

/** One user's preference pairs as embedding rows (n x H each, row i of both is pair i). */
export interface UserPairs {
  /** embeddings of the preferred responses */
  chosen: Rows;
  /** embeddings of the other responses */
  rejected: Rows;
}

/** A model adapted to one user. */
export class UserRewardModel {
  /** the model and the user's adapted weights over its base functions */
  readonly model: UserModel;
  /**
   * Wraps an adapted user (see `RewardModel.adapt`).
   * @param model the model and the user's adapted weights
   */
  constructor(model: UserModel) {
    this.model = model;
  }

  /** The user's mixing weights w: reward(x) = w . phi(x). */
  get weights(): Float64Array {
    return this.model.weights;
  }

  /** The user's rewards of embedding rows (n x H; a list of rows or one flat array). */
  score(rows: Rows): Float64Array {
    return scoreRows(this.model, rows);
  }

  /** Whether the user prefers response `a` to `b` (one embedding row each; ties are false). */
  prefers(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
    const [ra, rb] = this.score([a, b]);
    return ra > rb;
  }
}

/** A meta-trained model: the shared base functions, the learned start, and how it adapts. */
export class RewardModel {
  /** the checkpoint's tensors */
  readonly params: MrmParams;
  /** the adaptation settings `adapt` uses by default (the checkpoint's own) */
  readonly adaptation: AdaptSettings;
  /** where the checkpoint came from (for messages) */
  readonly source: string;
  /**
   * Wraps checkpoint tensors (see `loadModel` and `parseCheckpoint`).
   * @param params the checkpoint's tensors
   * @param adaptation the checkpoint's own adaptation settings
   * @param source where it came from (for messages)
   */
  constructor(params: MrmParams, adaptation: AdaptSettings, source: string) {
    this.params = params;
    this.adaptation = adaptation;
    this.source = source;
  }

  /** Embedding width H the model expects. */
  get dim(): number {
    return this.params.dim;
  }

  /** "mrm" (release: softmax weights, inner Adam) or "mrm-p" (signed weights, exact MAP fit under a learned prior). */
  get method(): "mrm" | "mrm-p" {
    return isPersonal(this.params) ? "mrm-p" : "mrm";
  }

  /**
   * Adapts a copy of the model to one user. Rows are checked (width H, finite values,
   * as many chosen as rejected, at least one pair); settings default to the checkpoint's.
   */
  adapt(pairs: UserPairs, settings: Partial<AdaptSettings> = {}): UserRewardModel {
    if (!pairs || typeof pairs !== "object" || !pairs.chosen || !pairs.rejected) {
      throw new ConfigError("adapt expects { chosen, rejected }: the user's preferred and other responses' embeddings");
    }
    const s = { ...this.adaptation, ...settings };
    return new UserRewardModel(adaptUser(this.params, pairs.chosen, pairs.rejected, s));
  }
}

/**
 * A checkpoint as a model: safetensors bytes as training writes them, or the release's
 * `torch.save(model.state_dict())` bytes (read natively). No file or
 * Deno API: this runs in browsers and Node. `name` labels error messages. The adaptation
 * settings come from the checkpoint's saved config (`innerLr`, `evalInnerEpochs`), else
 * the release's.
 * @example Bytes in (fetched, read from a file input, or bundled)
 * ```ts
 * import { parseCheckpoint } from "@mrm/mrm";
 * import assert from "node:assert/strict";
 *
 * const bytes = await Deno.readFile("examples/model.safetensors");
 * const model = parseCheckpoint(bytes, "model.safetensors");
 * assert.equal(model.method, "mrm-p");
 * assert.deepEqual(model.adaptation, { innerLr: 0.05, innerSteps: 5 });
 * assert.throws(() => parseCheckpoint(bytes.subarray(0, 4), "cut.safetensors"), /cut.safetensors: too short/);
 * ```
 */
export function parseCheckpoint(bytes: Uint8Array, name = "checkpoint bytes"): RewardModel {
  if (!(bytes instanceof Uint8Array)) throw new ConfigError(`${name}: expected the checkpoint's bytes (Uint8Array)`);
  const { tensors, metadata } = isTorchFile(bytes)
    ? { tensors: torchTensors(bytes, name), metadata: {} as Record<string, string> }
    : decodeSafetensors(bytes, name);
  const params = paramsFromTensors(name, tensors);
  let adaptation = RELEASE_ADAPTATION;
  if (metadata.config) {
    let config: { innerLr?: unknown; evalInnerEpochs?: unknown };
    try {
      config = JSON.parse(metadata.config);
    } catch {
      throw new FormatError(name, "__metadata__.config is not valid JSON");
    }
    const lr = config.innerLr, steps = config.evalInnerEpochs;
    if (lr !== undefined || steps !== undefined) {
      if (!(typeof lr === "number" && lr > 0 && Number.isInteger(steps) && (steps as number) >= 0)) {
        throw new FormatError(
          name,
          `config has innerLr ${lr} and evalInnerEpochs ${steps}; expected > 0 and an integer >= 0`,
        );
      }
      adaptation = { innerLr: lr, innerSteps: steps as number };
    }
  }
  return new RewardModel(params, adaptation, name);
}

/**
 * Loads a checkpoint from a path or URL (read with Deno's file API, or fetched where
 * there is none) or from its bytes. See `parseCheckpoint`.
 */
export async function loadModel(source: string | URL | Uint8Array): Promise<RewardModel> {
  if (source instanceof Uint8Array) return parseCheckpoint(source);
  const name = String(source);
  const local = typeof source === "string" || source.protocol === "file:";
  // deno-lint-ignore no-explicit-any
  const deno = (globalThis as any).Deno;
  let bytes: Uint8Array;
  if (local && deno) {
    try {
      bytes = await deno.readFile(source);
    } catch (e) {
      if (e instanceof deno.errors.NotFound) throw new FormatError(name, "file not found");
      if (e instanceof deno.errors.IsADirectory) throw new FormatError(name, "is a folder; expected a checkpoint file");
      throw e;
    }
  } else {
    const res = await fetch(source);
    if (!res.ok) throw new FormatError(name, `fetch failed: HTTP ${res.status}`);
    bytes = new Uint8Array(await res.arrayBuffer());
  }
  return parseCheckpoint(bytes, name);
}
