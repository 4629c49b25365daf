/**
 * The embedding store: `<prefix>.safetensors` (one `embeddings` tensor [N, H]) and
 * `<prefix>.json` (user id -> list of pair entries indexing rows of it).
 */
import { createHash } from "node:crypto";
import { FormatError } from "../errors.ts";
import { exists, writeFileAtomic } from "../fsutil.ts";
import { torchTensors } from "./torch.ts";
import { readHeader, readTensor, writeSafetensors } from "./safetensors.ts";
import { elementCount, rowCount } from "../util/rows.ts";

/** One preference pair of a user, as stored in `<prefix>.json`. */
export interface PairEntry {
  /** the conversation the pair comes from */
  conversation_id?: string | number;
  /** the prompt (text or messages) */
  prompt?: unknown;
  /** the preferred response's text */
  chosen?: string;
  /** the other response's text */
  rejected?: string;
  /** the encoder's reward of the chosen response */
  chosen_score?: number | null;
  /** the encoder's reward of the rejected response */
  rejected_score?: number | null;
  /** row of the chosen response in `embeddings` */
  chosen_idx: number;
  /** row of the rejected response in `embeddings` */
  rejected_idx: number;
  /** the dataset's own split (Reddit-style stores) */
  split?: "train" | "val";
  /** other fields are kept as they are */
  [extra: string]: unknown;
}

/** User id -> that user's pairs, in file order. */
export type StoreMeta = Record<string, PairEntry[]>;

/** An embedding store in memory: one contiguous Float32Array of N x H rows. */
export interface EmbeddingStore {
  /** the store prefix */
  prefix: string;
  /** all rows, N x H, row-major */
  embeddings: Float32Array;
  /** number of rows N */
  n: number;
  /** embedding width H */
  dim: number;
  /** user id -> that user's pairs */
  meta: StoreMeta;
  /** safetensors `__metadata__` (encoder id, dtype, ...) */
  info: Record<string, string>;
}

/** Reads and validates `<prefix>.json` against a row count `n` (when known). */
export async function readStoreMeta(file: string, n?: number, expectSha256?: string): Promise<StoreMeta> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new FormatError(file, "file not found");
    throw e;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new FormatError(file, `not valid JSON (${(e as Error).message})`);
  }
  if (expectSha256 && sha256(text) !== expectSha256) {
    throw new FormatError(
      file,
      "is not the metadata written with the embeddings beside it (its sha256 differs from the one recorded in the " +
        ".safetensors): a write was interrupted or files of two stores were mixed; re-run the step that wrote them",
    );
  }
  const dup = duplicateTopLevelKey(text);
  if (dup !== undefined) {
    throw new FormatError(file, `user id ${JSON.stringify(dup)} appears twice (JSON would keep only the last)`);
  }
  return validateStoreMeta(file, json, n);
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** The first key that occurs twice at the top level of a (valid) JSON object text, if any. */
export function duplicateTopLevelKey(text: string): string | undefined {
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1) {
        let k = j + 1;
        while (/\s/.test(text[k] ?? "")) k++;
        if (text[k] === ":") {
          const key = JSON.parse(text.slice(i, j + 1)) as string;
          if (seen.has(key)) return key;
          seen.add(key);
        }
      }
      i = j;
    } else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
  }
  return undefined;
}

/** Refuses non-finite embedding values, naming the first rows and the users whose pairs use them. */
export function checkFinite(file: string, data: Float32Array, dim: number, meta: StoreMeta): void {
  const bad: number[] = [];
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      const row = Math.floor(i / dim);
      if (bad[bad.length - 1] !== row) bad.push(row);
      i = (row + 1) * dim - 1;
    }
  }
  if (!bad.length) return;
  const rows = new Set(bad);
  const users = Object.entries(meta).filter(([, es]) =>
    es.some((e) => rows.has(e.chosen_idx) || rows.has(e.rejected_idx))
  ).map(([u]) => u);
  throw new FormatError(
    file,
    `${bad.length} embedding row(s) hold NaN or Inf: rows ${bad.slice(0, 10).join(", ")}${
      bad.length > 10 ? ", ..." : ""
    } (users ${users.slice(0, 10).join(", ")}${users.length > 10 ? ", ..." : ""}); re-encode them`,
  );
}

/** Checks the metadata object's shape and every index; returns it typed. */
export function validateStoreMeta(file: string, json: unknown, n?: number): StoreMeta {
  if (!json || typeof json !== "object" || Array.isArray(json)) {
    throw new FormatError(file, "expected a JSON object mapping user ids to lists of pairs");
  }
  const meta = json as Record<string, unknown>;
  const users = Object.keys(meta);
  if (users.length === 0) throw new FormatError(file, "no users");
  for (const u of users) {
    const list = meta[u];
    if (!Array.isArray(list)) throw new FormatError(file, `user '${u}': expected a list of pairs`);
    if (list.length === 0) throw new FormatError(file, `user '${u}' has no pairs`);
    list.forEach((e, i) => {
      if (!e || typeof e !== "object") throw new FormatError(file, `user '${u}' entry ${i}: expected an object`);
      for (const k of ["chosen_idx", "rejected_idx"] as const) {
        const v = (e as Record<string, unknown>)[k];
        if (typeof v !== "number" || !Number.isInteger(v)) {
          throw new FormatError(
            file,
            `user '${u}' entry ${i}: ${k} must be an integer row index, got ${JSON.stringify(v)}`,
          );
        }
        if (v < 0 || (n !== undefined && v >= n)) {
          throw new FormatError(
            file,
            `user '${u}' entry ${i}: ${k} ${JSON.stringify(v)} is out of range [0, ${n ?? "N"})`,
          );
        }
      }
      const s = (e as Record<string, unknown>).split;
      if (s !== undefined && s !== "train" && s !== "val") {
        throw new FormatError(file, `user '${u}' entry ${i}: split ${JSON.stringify(s)} must be "train" or "val"`);
      }
    });
  }
  return meta as StoreMeta;
}

/**
 * Loads a store; every check runs before the embeddings are read, so a bad store
 * is refused without being half-loaded.
 */
export async function loadStore(prefix: string): Promise<EmbeddingStore> {
  const stFile = `${prefix}.safetensors`;
  if (!(await exists(stFile)) && (await exists(`${prefix}.pt`))) return await loadTorchStore(prefix);
  const header = await readHeader(stFile);
  const info = header.tensors.embeddings;
  if (!info) {
    throw new FormatError(
      stFile,
      `no tensor named 'embeddings' (found: ${Object.keys(header.tensors).join(", ") || "none"})`,
    );
  }
  if (info.shape.length !== 2) {
    throw new FormatError(stFile, `'embeddings' must be 2-D [N, H], got shape ${JSON.stringify(info.shape)}`);
  }
  const [n, dim] = info.shape;
  const meta = await readStoreMeta(`${prefix}.json`, n, header.metadata.json_sha256);
  const { data } = await readTensor(stFile, "embeddings", header);
  checkFinite(stFile, data, dim, meta);
  return { prefix, embeddings: data, n, dim, meta, info: header.metadata };
}

/**
 * A store whose embeddings are the release's `torch.save` file (`<prefix>.pt`: one
 * [N, H] tensor, or a dict holding one) next to `<prefix>.json`; read natively.
 */
async function loadTorchStore(prefix: string): Promise<EmbeddingStore> {
  const file = `${prefix}.pt`;
  const tensors = torchTensors(await Deno.readFile(file), file);
  const twoD = Object.entries(tensors).filter(([, t]) => t.shape.length === 2);
  const pick = tensors.embeddings?.shape.length === 2 ? tensors.embeddings : twoD.length === 1 ? twoD[0][1] : undefined;
  if (!pick) {
    const found = Object.entries(tensors).map(([k, t]) => `${k || "(the tensor)"} ${JSON.stringify(t.shape)}`);
    throw new FormatError(file, `expected one 2-D [N, H] embeddings tensor, found: ${found.join(", ") || "none"}`);
  }
  const [n, dim] = pick.shape;
  const meta = await readStoreMeta(`${prefix}.json`, n);
  checkFinite(file, pick.data, dim, meta);
  return { prefix, embeddings: pick.data, n, dim, meta, info: { source: "torch.save", dtype: pick.dtype } };
}

/**
 * One user's pairs from a store as embedding rows: `chosen` and `rejected` (n x H each,
 * flat, row i of both is pair i), ready for `RewardModel.adapt`. `split` keeps only the
 * pairs marked "train" or "val"; `limit` keeps the first n.
 */
export function userPairs(
  store: EmbeddingStore,
  user: string,
  { split, limit }: { split?: "train" | "val"; limit?: number } = {},
): { chosen: Float32Array; rejected: Float32Array; pairs: PairEntry[] } {
  const all = store.meta[user];
  if (!all) {
    const ids = Object.keys(store.meta);
    throw new FormatError(
      `${store.prefix}.json`,
      `no user '${user}' (${ids.length} users, e.g. ${ids.slice(0, 3).map((u) => `'${u}'`).join(", ")})`,
    );
  }
  let pairs = split ? all.filter((p) => p.split === split) : all;
  if (limit !== undefined) pairs = pairs.slice(0, limit);
  const H = store.dim, chosen = new Float32Array(pairs.length * H), rejected = new Float32Array(pairs.length * H);
  pairs.forEach((p, i) => {
    chosen.set(store.embeddings.subarray(p.chosen_idx * H, (p.chosen_idx + 1) * H), i * H);
    rejected.set(store.embeddings.subarray(p.rejected_idx * H, (p.rejected_idx + 1) * H), i * H);
  });
  return { chosen, rejected, pairs };
}

/** Writes a store atomically (both files); F32 unless `dtype: "F16"`. */
export async function writeStore(
  prefix: string,
  embeddings: Float32Array,
  dim: number,
  meta: StoreMeta,
  { dtype = "F32", info = {} }: { dtype?: "F32" | "F16" | "BF16"; info?: Record<string, string> } = {},
): Promise<void> {
  const n = rowCount(embeddings, dim);
  if (!Number.isInteger(n)) {
    throw new Error(`writeStore: ${elementCount(embeddings)} values are not a multiple of H=${dim}`);
  }
  validateStoreMeta(`${prefix}.json`, meta, n);
  const dir = prefix.includes("/") ? prefix.slice(0, prefix.lastIndexOf("/")) : ".";
  await Deno.mkdir(dir, { recursive: true });
  // temporary files that killed writers of this store left behind
  const base = prefix.slice(prefix.lastIndexOf("/") + 1);
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.startsWith(`${base}.`) && /\.(safetensors|json)\.tmp-\d+-[0-9a-f]{8}$/.test(e.name)) {
      await Deno.remove(`${dir}/${e.name}`).catch(() => {});
    }
  }
  // the JSON goes first and the embeddings record its hash: a kill between the two renames
  // leaves a pair that loadStore refuses instead of one that trains on the wrong rows
  const text = JSON.stringify(meta);
  await writeFileAtomic(`${prefix}.json`, text);
  await writeSafetensors(`${prefix}.safetensors`, { embeddings: { data: embeddings, shape: [n, dim] } }, {
    dtype,
    metadata: { format: "pt", dtype, created: new Date().toISOString(), ...info, json_sha256: sha256(text) },
  });
}
