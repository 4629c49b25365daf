/**
 * Downloads a Hugging Face model folder as the Hub serves it: config.json, the
 * tokenizer files, and the safetensors weights (the shard index and every shard it
 * names, or a single model.safetensors). Each file is resumable (see download.ts);
 * files already complete are kept. `HF_TOKEN` authorizes gated repos.
 */
import { download, DownloadError, hubModelUrl } from "../../data/download.ts";
import { FormatError } from "../../errors.ts";
import { exists } from "../../fsutil.ts";

/** The files every encoder model folder needs besides its weights. */
export const MODEL_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json"];

/** Fetches what is missing of `repo` into `dir`; returns the files fetched. */
export async function fetchModelFolder(
  repo: string,
  dir: string,
  { revision = "main", onProgress }: {
    revision?: string;
    onProgress?: (file: string, done: number, total: number | undefined) => void;
  } = {},
): Promise<string[]> {
  const token = Deno.env.get("HF_TOKEN");
  const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
  const fetched: string[] = [];
  const get = async (file: string) => {
    if (await exists(`${dir}/${file}`)) return;
    await download(hubModelUrl(repo, file, { revision }), `${dir}/${file}`, {
      headers,
      onProgress: (d, t) => onProgress?.(file, d, t),
    });
    fetched.push(file);
  };
  for (const f of MODEL_FILES) await get(f);
  const index = "model.safetensors.index.json";
  try {
    await get(index);
  } catch (e) {
    if (!(e instanceof DownloadError && /HTTP 404/.test(e.message))) throw e;
    await get("model.safetensors");
    return fetched;
  }
  let map: Record<string, string>;
  try {
    map = JSON.parse(await Deno.readTextFile(`${dir}/${index}`)).weight_map;
  } catch (e) {
    throw new FormatError(`${dir}/${index}`, `not a shard index (${(e as Error).message})`);
  }
  if (!map || typeof map !== "object") throw new FormatError(`${dir}/${index}`, "has no weight_map");
  for (const shard of [...new Set(Object.values(map))].sort()) await get(shard);
  return fetched;
}
