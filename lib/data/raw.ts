/**
 * Where the raw datasets live and how they are fetched: laid out as on the Hub
 * under a raw folder (default `data/raw/<dataset>`). Without `--raw_dir` missing
 * files are downloaded (resumably); with it, or offline, the error says exactly
 * which files are needed and where.
 */
import { ConfigError } from "../errors.ts";
import { exists } from "../fsutil.ts";
import { download, hubDatasetUrl } from "./download.ts";

/** The Hub repos and files of each dataset. */
export const RAW = {
  prism: { repo: "HannahRoseKirk/prism-alignment", revision: "main", files: ["survey.jsonl", "conversations.jsonl"] },
  reddit: {
    repo: "openai/summarize_from_feedback",
    revision: "refs/convert/parquet",
    files: ["comparisons/train/0000.parquet", "comparisons/validation/0000.parquet"],
  },
} as const;

/** A file being fetched, for progress output. */
export type FetchProgress = (file: string, done: number, total: number | undefined) => void;

async function fetchMissing(
  dataset: keyof typeof RAW,
  dir: string,
  { allowDownload, onProgress }: { allowDownload: boolean; onProgress?: FetchProgress },
): Promise<void> {
  const spec = RAW[dataset];
  const missing: string[] = [];
  for (const f of spec.files) if (!(await exists(`${dir}/${f}`))) missing.push(f);
  if (missing.length === 0) return;
  const where = () =>
    `needs ${spec.files.map((f) => `${dir}/${f}`).join(" and ")} (from the Hub dataset ${spec.repo}${
      spec.revision !== "main" ? `, branch ${spec.revision}` : ""
    }); missing: ${missing.join(", ")}`;
  if (!allowDownload) {
    throw new ConfigError(`${dataset}: ${where()}. Put the files there, or drop --raw_dir to download them.`);
  }
  for (const f of missing) {
    try {
      await download(hubDatasetUrl(spec.repo, f, { revision: spec.revision }), `${dir}/${f}`, {
        onProgress: (d, t) => onProgress?.(f, d, t),
      });
    } catch (e) {
      throw new ConfigError(
        `${dataset}: download failed (${
          (e as Error).message
        }). Offline? This step ${where()}; place them there and rerun (or pass --raw_dir).`,
      );
    }
  }
}

/** PRISM's two files, downloaded when allowed and missing. */
export async function prismFiles(
  dir: string,
  opts: { allowDownload: boolean; onProgress?: FetchProgress },
): Promise<{ survey: string; conversations: string }> {
  await fetchMissing("prism", dir, opts);
  return { survey: `${dir}/survey.jsonl`, conversations: `${dir}/conversations.jsonl` };
}

/**
 * Reddit's sources: the parquet conversion (train + validation) if present, else the
 * original batch files `comparisons/batch*.json`, else a download of the parquet files.
 */
export async function redditSources(
  dir: string,
  opts: { allowDownload: boolean; onProgress?: FetchProgress },
): Promise<{ kind: "parquet"; train: string; validation: string } | { kind: "batches"; files: string[] }> {
  const train = `${dir}/comparisons/train/0000.parquet`, validation = `${dir}/comparisons/validation/0000.parquet`;
  if ((await exists(train)) && (await exists(validation))) return { kind: "parquet", train, validation };
  const batches: string[] = [];
  if (await exists(`${dir}/comparisons`)) {
    for await (const e of Deno.readDir(`${dir}/comparisons`)) {
      if (e.isFile && /^batch.*\.json$/.test(e.name)) batches.push(`${dir}/comparisons/${e.name}`);
    }
  }
  if (batches.length) return { kind: "batches", files: batches.sort() };
  await fetchMissing("reddit", dir, opts);
  return { kind: "parquet", train, validation };
}
