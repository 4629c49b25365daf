/** Checkpoints (PyTorch-loadable state_dicts) and resume states, as safetensors. */
import { FormatError } from "../errors.ts";
import { type MrmParams, namedArrays, paramsFromTensors, paramsToTensors } from "../model/params.ts";
import type { TrainConfig } from "../presets.ts";
import { readAll, type TensorToWrite, writeSafetensors } from "../store/safetensors.ts";
import { torchTensors } from "../store/torch.ts";
import type { TrainState } from "../train/meta.ts";

/** Writes `epoch_<E>.safetensors`-style checkpoints: state_dict tensors + config metadata. */
export async function saveCheckpoint(
  path: string,
  params: MrmParams,
  config: TrainConfig,
  extra: Record<string, string> = {},
): Promise<void> {
  await writeSafetensors(path, paramsToTensors(params), {
    metadata: { format: "pt", config: JSON.stringify(config), ...extra },
  });
}

async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new FormatError(path, "file not found");
    throw e;
  }
}

/**
 * Loads a checkpoint: ours (safetensors, with the run's config) or the release's
 * `torch.save(model.state_dict())` (`.pt`, no config). `dim` (when given) must match the
 * store's H.
 */
export async function loadCheckpoint(
  path: string,
  { dim }: { dim?: number } = {},
): Promise<{ params: MrmParams; config?: TrainConfig; metadata: Record<string, string> }> {
  const st = await Deno.stat(path).catch(() => undefined);
  if (st?.isDirectory) throw new FormatError(path, "is a folder; expected a checkpoint file (.safetensors)");
  const torch = path.endsWith(".pt");
  const { tensors, metadata } = torch
    ? { tensors: torchTensors(await readBytes(path), path), metadata: {} as Record<string, string> }
    : await readAll(path);
  const params = paramsFromTensors(path, tensors);
  if (dim !== undefined && params.dim !== dim) {
    throw new FormatError(path, `checkpoint expects embeddings of dimension ${params.dim} but the store has H=${dim}`);
  }
  let config: TrainConfig | undefined;
  if (metadata.config) {
    try {
      config = JSON.parse(metadata.config);
    } catch {
      throw new FormatError(path, "__metadata__.config is not valid JSON");
    }
  }
  return { params, config, metadata };
}

/** Writes the full training state (params, Adam moments, counters) atomically. */
export async function saveResumeState(path: string, state: TrainState, config: TrainConfig): Promise<void> {
  const t: Record<string, TensorToWrite> = paramsToTensors(state.params);
  namedArrays(state.params).forEach(([name], i) => {
    t[`adam.m.${name}`] = { data: state.adam.m[i], shape: [state.adam.m[i].length] };
    t[`adam.v.${name}`] = { data: state.adam.v[i], shape: [state.adam.v[i].length] };
  });
  await writeSafetensors(path, t, {
    metadata: {
      config: JSON.stringify(config),
      epoch: String(state.epoch),
      step: String(state.step),
      adam_step: String(state.adam.step),
    },
  });
}

/** Reads a state written by saveResumeState. */
export async function loadResumeState(path: string): Promise<{ state: TrainState; config: TrainConfig }> {
  const st = await Deno.stat(path).catch(() => undefined);
  if (st?.isDirectory) throw new FormatError(path, "is a folder; expected a checkpoint file (.safetensors)");
  const { tensors, metadata } = await readAll(path);
  const params = paramsFromTensors(path, tensors);
  const names = namedArrays(params).map(([n]) => n);
  const get = (k: string) => {
    const t = tensors[k];
    if (!t) throw new FormatError(path, `resume state has no '${k}' tensor`);
    return t.data;
  };
  const state: TrainState = {
    epoch: Number(metadata.epoch),
    step: Number(metadata.step),
    params,
    adam: {
      step: Number(metadata.adam_step),
      m: names.map((n) => get(`adam.m.${n}`)),
      v: names.map((n) => get(`adam.v.${n}`)),
    },
  };
  if (!Number.isInteger(state.epoch) || !Number.isInteger(state.step)) {
    throw new FormatError(path, "resume state lacks epoch/step metadata");
  }
  return { state, config: JSON.parse(metadata.config) };
}
