/**
 * The ONNX session of a reward model folder on onnxruntime-web: the WebGPU EP when a
 * real (non-fallback) GPU adapter exists, wasm otherwise; `device` forces one.
 */
import { FormatError } from "../errors.ts";
import { type Device, pickDevice } from "./device.ts";
import { exists } from "../fsutil.ts";

export type { Device };

// deno-lint-ignore no-explicit-any
type Ort = any;

/** A loaded session and the runtime module that made it. */
export interface ModelSession {
  ort: Ort;
  // deno-lint-ignore no-explicit-any
  session: any;
  device: Device;
  inputNames: string[];
  outputName: string;
  /** the classifier's own reward output, when the export has one (`logits`) */
  logitsName?: string;
}

/**
 * Opens `model.onnx` (with `model.onnx_data` / `model.onnx.data` external data when
 * present). The model must output `last_hidden_state` and take `input_ids` and
 * `attention_mask` (optionally `position_ids`), without past key values.
 */
export async function openSession(
  dir: string,
  { device = "auto", threads = 1 }: { device?: Device | "auto"; threads?: number } = {},
): Promise<ModelSession> {
  const file = `${dir}/model.onnx`;
  if (!(await exists(file))) {
    throw new FormatError(file, "file not found (export the reward model to ONNX first; see the README)");
  }
  const dev = await pickDevice(device);
  const ort: Ort = dev === "webgpu" ? await import("onnxruntime-web/webgpu") : await import("onnxruntime-web");
  ort.env.wasm.numThreads = threads;
  ort.env.logLevel = "error";
  const externalData = [];
  for (const name of ["model.onnx_data", "model.onnx.data"]) {
    if (await exists(`${dir}/${name}`)) externalData.push({ path: name, data: await Deno.readFile(`${dir}/${name}`) });
  }
  let session;
  try {
    session = await ort.InferenceSession.create(await Deno.readFile(file), {
      executionProviders: [dev],
      graphOptimizationLevel: "all",
      ...(externalData.length ? { externalData } : {}),
    });
  } catch (e) {
    throw new FormatError(file, `onnxruntime-web (${dev}) could not load it: ${(e as Error).message}`);
  }
  const inputNames: string[] = session.inputNames;
  if (inputNames.some((n) => n.startsWith("past_key_values"))) {
    throw new FormatError(
      file,
      "takes past_key_values inputs; export without cache (optimum-cli export onnx --task feature-extraction)",
    );
  }
  for (const need of ["input_ids", "attention_mask"]) {
    if (!inputNames.includes(need)) {
      throw new FormatError(file, `has no '${need}' input (inputs: ${inputNames.join(", ")})`);
    }
  }
  const outputName = session.outputNames.includes("last_hidden_state") ? "last_hidden_state" : undefined;
  if (!outputName) {
    throw new FormatError(
      file,
      `has no 'last_hidden_state' output (outputs: ${
        session.outputNames.join(", ")
      }); export with --task feature-extraction`,
    );
  }
  const logitsName = session.outputNames.includes("logits") ? "logits" : undefined;
  return { ort, session, device: dev, inputNames, outputName, logitsName };
}
