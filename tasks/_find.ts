/** Finding runs and checkpoints in output/. */
import { ConfigError } from "../lib/errors.ts";
import { exists } from "../lib/fsutil.ts";

/** The newest run folder under `output/<dataset>` (by name, which starts with a timestamp). */
export async function newestRun(root: string): Promise<string> {
  const runs: string[] = [];
  try {
    for await (const e of Deno.readDir(root)) {
      if (e.isDirectory && (await exists(`${root}/${e.name}/config.json`))) runs.push(e.name);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (runs.length === 0) throw new ConfigError(`no runs under ${root}; train one first or pass --ckpt/--run`);
  runs.sort();
  return `${root}/${runs[runs.length - 1]}`;
}

/** The checkpoint of a run to test: best.safetensors, else the highest epoch_<E>. */
export async function runCheckpoint(run: string): Promise<string> {
  if (await exists(`${run}/best.safetensors`)) return `${run}/best.safetensors`;
  let bestE = -1;
  for await (const e of Deno.readDir(run)) {
    const m = /^epoch_(\d+)\.safetensors$/.exec(e.name);
    if (m && Number(m[1]) > bestE) bestE = Number(m[1]);
  }
  if (bestE < 0) throw new ConfigError(`${run}: no checkpoint (best.safetensors or epoch_<E>.safetensors)`);
  return `${run}/epoch_${bestE}.safetensors`;
}
