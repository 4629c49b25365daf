/**
 * Encoding conversations into embedding stores with a reward model: Hugging Face folders
 * (our WGSL forward pass on WebGPU, onnxruntime-web on wasm) and exported ONNX folders,
 * chat templates, the store writer and shard merging. Pulls in onnxruntime-web and the
 * tokenizers.
 * @module
 */
export { type Encoded, type EncoderOptions, loadRewardHead, RewardEncoder } from "./lib/encoder/encoder.ts";
export { type ChatTokenizer, loadChatTokenizer } from "./lib/encoder/tokenizer.ts";
export { encodeStore, mergeStores, planStore, shardPairs, type StorePlan } from "./lib/encoder/writer.ts";
export type { EncoderEngine, EngineOptions } from "./lib/encoder/engine.ts";
export type { Device } from "./lib/encoder/device.ts";
export type { Message, RawPair } from "./lib/data/pairs.ts";
export type { StoreMeta } from "./lib/store/store.ts";
export type { EncodeFn, EncodeStoreOptions } from "./lib/encoder/writer.ts";
export type { BatchOutput } from "./lib/encoder/engine.ts";
export type { Precision } from "./lib/encoder/hf/graph.ts";
export type { PairEntry } from "./lib/store/store.ts";
export type { WriteProgress } from "./lib/encoder/writer.ts";
