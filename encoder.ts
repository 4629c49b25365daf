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
