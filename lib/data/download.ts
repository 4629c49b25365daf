/**
 * Resumable downloads from the Hugging Face Hub (or any HTTP server): a `.part`
 * file continued with `Range` requests, retries with exponential back-off, a size
 * check against the server's total, then an atomic rename.
 */

/** The Hub's base URL (`HF_ENDPOINT` overrides, e.g. a mirror or a test server). */
export function hubEndpoint(): string {
  return (Deno.env.get("HF_ENDPOINT") ?? "https://huggingface.co").replace(/\/+$/, "");
}

/** URL of a file in a Hub dataset repo at a revision (e.g. `refs/convert/parquet`). */
export function hubDatasetUrl(
  repo: string,
  path: string,
  { revision = "main", endpoint = hubEndpoint() } = {},
): string {
  return `${endpoint}/datasets/${repo}/resolve/${encodeURIComponent(revision)}/${
    path.split("/").map(encodeURIComponent).join("/")
  }`;
}

/** URL of a file in a Hub model repo at a revision. */
export function hubModelUrl(
  repo: string,
  path: string,
  { revision = "main", endpoint = hubEndpoint() } = {},
): string {
  return `${endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${
    path.split("/").map(encodeURIComponent).join("/")
  }`;
}

/** A download that cannot succeed by retrying (404, 401, ...). */
export class DownloadError extends Error {
  /** @param url what was fetched; @param message why it failed */
  constructor(readonly url: string, message: string) {
    super(`${url}: ${message}`);
    this.name = "DownloadError";
  }
}

/** Options of a download. */
export interface DownloadOptions {
  /** attempts after the first failure @default 5 */
  retries?: number;
  /** first back-off delay, doubled each retry @default 500 */
  backoffMs?: number;
  /** called with bytes done and the total (when known) */
  onProgress?: (done: number, total: number | undefined) => void;
  /** extra request headers (e.g. `Authorization` for gated Hub repos) */
  headers?: Record<string, string>;
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return 0;
    throw e;
  }
}

/**
 * Downloads `url` to `dest`, continuing a previous partial download. Returns the
 * size and whether any bytes came from an earlier attempt.
 */
export async function download(
  url: string,
  dest: string,
  { retries = 5, backoffMs = 500, onProgress, headers = {} }: DownloadOptions = {},
): Promise<{ bytes: number; resumed: boolean }> {
  const part = `${dest}.part`;
  const dir = dest.includes("/") ? dest.slice(0, dest.lastIndexOf("/")) : ".";
  await Deno.mkdir(dir, { recursive: true });
  let failures = 0, resumed = false;
  while (true) {
    const start = await fileSize(part);
    let total: number | undefined;
    try {
      const res = await fetch(url, { headers: start > 0 ? { ...headers, Range: `bytes=${start}-` } : headers });
      if (res.status === 416) {
        const m = /\/(\d+)$/.exec(res.headers.get("content-range") ?? "");
        await res.body?.cancel();
        if (m && Number(m[1]) === start) {
          total = start;
        } else {
          await Deno.truncate(part, 0);
          continue;
        }
      } else if (res.status === 429 || res.status >= 500) {
        await res.body?.cancel();
        throw new Error(`HTTP ${res.status}`);
      } else if (!res.ok) {
        await res.body?.cancel();
        throw new DownloadError(url, `HTTP ${res.status} ${res.statusText}`);
      } else {
        const append = res.status === 206 && start > 0;
        if (append) {
          resumed = true;
          const m = /\/(\d+)$/.exec(res.headers.get("content-range") ?? "");
          total = m ? Number(m[1]) : undefined;
        } else {
          const len = res.headers.get("content-length");
          total = len === null ? undefined : Number(len);
        }
        const f = await Deno.open(part, { write: true, create: true, append, truncate: !append });
        let done = append ? start : 0;
        try {
          for await (const chunk of res.body!) {
            let off = 0;
            while (off < chunk.length) off += await f.write(chunk.subarray(off));
            done += chunk.length;
            onProgress?.(done, total);
          }
        } finally {
          f.close();
        }
      }
      const size = await fileSize(part);
      if (total !== undefined && size !== total) throw new Error(`size ${size} != expected ${total}`);
      await Deno.rename(part, dest);
      return { bytes: size, resumed };
    } catch (e) {
      if (e instanceof DownloadError) throw e;
      if (++failures > retries) {
        throw new DownloadError(
          url,
          `failed after ${failures} attempts (${(e as Error).message}); rerun to resume from ${await fileSize(
            part,
          )} bytes`,
        );
      }
      await new Promise((r) => setTimeout(r, backoffMs * 2 ** (failures - 1)));
    }
  }
}
