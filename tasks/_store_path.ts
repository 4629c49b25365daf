/** Resolving a store prefix from flags, with errors that say which command makes it. */
import { ConfigError } from "../lib/errors.ts";
import { exists } from "../lib/fsutil.ts";

/** The command that creates the default store of a dataset preset. */
export function makerCommand(dataset: string): string {
  if (dataset.startsWith("reddit")) return "deno task preprocess:reddit";
  if (dataset === "synthetic") return "deno task synth";
  return "deno task preprocess:prism";
}

/**
 * The store prefix from `--data`, or from the release's `--embed_pt`/`--meta_json`
 * (extensions stripped; both must name the same prefix).
 */
export function resolvePrefix(
  values: { data?: string; embed_pt?: string; meta_json?: string },
  fallback: string,
): string {
  const strip = (p: string) => p.replace(/\.(pt|safetensors|json)$/, "");
  const cands = [values.data, values.embed_pt, values.meta_json].filter((v): v is string => typeof v === "string").map(
    strip,
  );
  if (new Set(cands).size > 1) {
    throw new ConfigError(
      `--data/--embed_pt/--meta_json name different stores (${
        [...new Set(cands)].join(" vs ")
      }); they must share one prefix`,
    );
  }
  return cands[0] ?? fallback;
}

/** Checks that both store files exist; the error names what is missing and how to make it. */
export async function requireStore(prefix: string, dataset: string): Promise<void> {
  const missing: string[] = [];
  // the embeddings as safetensors, or as the release's torch.save file
  if (!(await exists(prefix + ".safetensors")) && !(await exists(prefix + ".pt"))) {
    missing.push(`${prefix}.safetensors (or .pt)`);
  }
  if (!(await exists(prefix + ".json"))) missing.push(prefix + ".json");
  if (missing.length === 0) return;
  throw new ConfigError(
    `no embedding store at '${prefix}': missing ${missing.join(" and ")}.` +
      ` Create it with \`${makerCommand(dataset)}\` or pass --data <prefix>.`,
  );
}
