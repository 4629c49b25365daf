/** Writes bytes or text to `path` atomically: a temp file beside it, then a rename. */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array | string,
): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    if (typeof data === "string") await Deno.writeTextFile(tmp, data);
    else await Deno.writeFile(tmp, data);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** Writes several byte chunks to `path` atomically without joining them in memory. */
export async function writeChunksAtomic(
  path: string,
  chunks: Iterable<Uint8Array>,
): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const f = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    for (const c of chunks) {
      let off = 0;
      while (off < c.length) off += await f.write(c.subarray(off));
    }
    f.close();
    await Deno.rename(tmp, path);
  } catch (e) {
    try {
      f.close();
    } catch { /* already closed */ }
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** True when `path` exists. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
