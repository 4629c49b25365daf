/**
 * The reward-model encoder: conversations -> the last layer's hidden state at the
 * last real token (after the final norm), in length-sorted, right-padded batches
 * with an attention mask; and the model's own reward when the `score` head is
 * available (`score.safetensors`, or the sharded checkpoint's index).
 */
import { FormatError } from "../errors.ts";
import { exists } from "../fsutil.ts";
import { readHeader, readTensor } from "../store/safetensors.ts";
import { conversationOf, type Message } from "../data/pairs.ts";
import { type ChatTokenizer, loadChatTokenizer } from "./tokenizer.ts";
import { type Device, type EncoderEngine, type EngineOptions, openEngine } from "./engine.ts";

/** Encoder settings. */
export interface EncoderOptions extends EngineOptions {
  /** sequences per forward pass @default 8 */
  batchSize?: number;
}

/** Embeddings (n x H) in input order, rewards when known, tokens processed. */
export interface Encoded {
  /** last-token hidden states, one row of H per conversation */
  embeddings: Float32Array;
  /** the model's own reward (its `logits` output), else the head applied to the embedding */
  scores?: Float32Array;
  /** tokens encoded */
  tokens: number;
  /**
   * when both the model's reward and the head are available: how many rewards were
   * compared with head . embedding, how many disagree, and the largest difference
   */
  scoreCheck?: { checked: number; mismatches: number; maxAbsDiff: number };
}

/** Finds `score.weight` in the model folder: score.safetensors, model.safetensors, or a shard index. */
export async function loadRewardHead(dir: string): Promise<Float32Array | undefined> {
  const candidates = [`${dir}/score.safetensors`, `${dir}/model.safetensors`];
  const index = `${dir}/model.safetensors.index.json`;
  if (await exists(index)) {
    const map = JSON.parse(await Deno.readTextFile(index)).weight_map ?? {};
    if (map["score.weight"]) candidates.unshift(`${dir}/${map["score.weight"]}`);
  }
  for (const f of candidates) {
    if (!(await exists(f))) continue;
    const h = await readHeader(f);
    if (h.tensors["score.weight"]) return (await readTensor(f, "score.weight", h)).data;
  }
  return undefined;
}

/** A loaded reward-model folder. */
export class RewardEncoder {
  private constructor(
    readonly dir: string,
    readonly tokenizer: ChatTokenizer,
    /** the forward pass in use */
    readonly engine: EncoderEngine,
    readonly head: Float32Array | undefined,
    readonly batchSize: number,
    readonly name: string,
  ) {}

  /**
   * Loads tokenizer, chat template, the forward pass and (optionally) the reward head
   * from a Hugging Face model folder (config.json + safetensors, converted once into a
   * cache beside it) or an exported ONNX folder (model.onnx).
   */
  static async load(dir: string, { batchSize = 8, ...engineOptions }: EncoderOptions = {}): Promise<RewardEncoder> {
    const tokenizer = await loadChatTokenizer(dir);
    let name = dir;
    if (await exists(`${dir}/config.json`)) {
      const cfg = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
      name = cfg._name_or_path ?? name;
    }
    const engine = await openEngine(dir, engineOptions);
    const head = await loadRewardHead(dir);
    return new RewardEncoder(dir, tokenizer, engine, head, batchSize, name);
  }

  /** The execution provider in use. */
  get device(): Device {
    return this.engine.device;
  }

  /** Releases the engine's session. */
  async dispose(): Promise<void> {
    await this.engine.dispose?.();
  }

  /**
   * The sequences the engine cannot encode whole (too long for the model or for the
   * attention memory of one pass), with the reason. Nothing is ever truncated.
   */
  oversized(seqs: number[][]): { index: number; tokens: number; reason: string }[] {
    const out = [];
    for (const [index, s] of seqs.entries()) {
      const reason = this.engine.limit?.(s.length);
      if (reason) out.push({ index, tokens: s.length, reason });
    }
    return out;
  }

  /** Encodes token sequences: length-sorted batches, results in input order. */
  async encodeIds(seqs: number[][], onBatch?: (done: number, tokens: number) => void): Promise<Encoded> {
    for (const [i, s] of seqs.entries()) {
      if (s.length === 0) throw new FormatError(this.dir, `sequence ${i} tokenized to nothing`);
    }
    const over = this.oversized(seqs);
    if (over.length) {
      throw new FormatError(
        this.dir,
        `${over.length} sequence(s) cannot be encoded whole (nothing is truncated): ` +
          over.slice(0, 5).map((o) => `#${o.index} (${o.tokens} tokens) ${o.reason}`).join("; "),
      );
    }
    const order = [...seqs.keys()].sort((a, b) => seqs[a].length - seqs[b].length || a - b);
    let H = 0, embeddings = new Float32Array(0), tokens = 0, done = 0;
    let modelScores: Float32Array | undefined;
    for (let i = 0; i < order.length; i += this.batchSize) {
      const idx = order.slice(i, i + this.batchSize);
      const { rows, logits } = await this.engine.run(idx.map((j) => seqs[j]));
      if (logits) {
        modelScores ??= new Float32Array(seqs.length);
        idx.forEach((j, b) => (modelScores![j] = logits[b]));
      }
      if (!H) {
        H = rows.length / idx.length;
        embeddings = new Float32Array(seqs.length * H);
      }
      idx.forEach((j, b) => embeddings.set(rows.subarray(b * H, (b + 1) * H), j * H));
      tokens += idx.reduce((s, j) => s + seqs[j].length, 0);
      done += idx.length;
      onBatch?.(done, tokens);
    }
    let headScores: Float32Array | undefined;
    if (this.head) {
      if (this.head.length !== H) {
        throw new FormatError(this.dir, `score.weight has ${this.head.length} values but hidden states have H=${H}`);
      }
      headScores = new Float32Array(seqs.length);
      for (let r = 0; r < seqs.length; r++) {
        let s = 0;
        for (let h = 0; h < H; h++) s += this.head[h] * embeddings[r * H + h];
        headScores[r] = s;
      }
    }
    let scoreCheck: Encoded["scoreCheck"];
    if (modelScores && headScores) {
      // the release's check: the model's reward equals its head applied to the embedding
      let mismatches = 0, maxAbsDiff = 0;
      modelScores.forEach((m, r) => {
        const d = Math.abs(m - headScores![r]);
        maxAbsDiff = Math.max(maxAbsDiff, d);
        if (d > 1e-3 * Math.max(1, Math.abs(m))) mismatches++;
      });
      scoreCheck = { checked: seqs.length, mismatches, maxAbsDiff };
    }
    return { embeddings, scores: modelScores ?? headScores, tokens, scoreCheck };
  }

  /** Encodes conversations (each ending with the assistant reply to score). */
  encode(conversations: Message[][], onBatch?: (done: number, tokens: number) => void): Promise<Encoded> {
    return this.encodeIds(conversations.map((m) => this.tokenizer.encode(m)), onBatch);
  }

  /**
   * Encodes one user's (prompt, chosen, rejected) examples: the single-user
   * workflow's first step. Rows of `chosen` / `rejected` align with `examples`.
   */
  async encodePairs(
    examples: { prompt: Message[] | string; chosen: string; rejected: string }[],
  ): Promise<
    { chosen: Float32Array; rejected: Float32Array; chosenScores?: Float32Array; rejectedScores?: Float32Array }
  > {
    const n = examples.length;
    const enc = await this.encode([
      ...examples.map((e) => conversationOf(e.prompt, e.chosen)),
      ...examples.map((e) => conversationOf(e.prompt, e.rejected)),
    ]);
    const H = enc.embeddings.length / (2 * n);
    return {
      chosen: enc.embeddings.slice(0, n * H),
      rejected: enc.embeddings.slice(n * H),
      chosenScores: enc.scores?.slice(0, n),
      rejectedScores: enc.scores?.slice(n),
    };
  }
}
