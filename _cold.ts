import { WebGpuEngine } from "./lib/encoder/webgpu/engine.ts";
import { GEMM_TILE } from "./lib/encoder/webgpu/shaders.ts";
const eng = await WebGpuEngine.load(`tests/fixtures/hf/tiny-qwen3`, { tile: GEMM_TILE });
await eng.run([[1, 2, 3, 4, 5]]);
console.error("done");
