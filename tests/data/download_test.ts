import assert from "node:assert/strict";
import { download, DownloadError, hubDatasetUrl } from "../../lib/data/download.ts";
import { tempDir } from "../helpers.ts";

/** A loopback server with Range support that can drop the connection mid-file. */
function serve(body: Uint8Array, { dropFirst = 0, fail5xx = 0 } = {}) {
  let requests = 0;
  const ranges: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    requests++;
    if (new URL(req.url).pathname.endsWith("/missing")) return new Response("no", { status: 404 });
    if (fail5xx-- > 0) return new Response("busy", { status: 503 });
    const range = req.headers.get("range");
    ranges.push(range ?? "");
    let start = 0;
    if (range) start = Number(/bytes=(\d+)-/.exec(range)![1]);
    const slice = body.slice(start) as Uint8Array<ArrayBuffer>;
    const headers: Record<string, string> = { "content-length": String(slice.length), "accept-ranges": "bytes" };
    if (range) headers["content-range"] = `bytes ${start}-${body.length - 1}/${body.length}`;
    if (dropFirst-- > 0) {
      // send part of the body, then break the connection
      const stream = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(slice.subarray(0, Math.floor(slice.length / 3)));
          setTimeout(() => c.error(new Error("connection dropped")), 20);
        },
      });
      return new Response(stream, { status: range ? 206 : 200, headers });
    }
    return new Response(slice, { status: range ? 206 : 200, headers });
  });
  const port = (server.addr as Deno.NetAddr).port;
  return { url: `http://127.0.0.1:${port}`, server, stats: () => ({ requests, ranges }) };
}

const payload = Uint8Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251);

Deno.test("download: a connection dropped mid-file is resumed with Range and the file is intact", async () => {
  await using t = await tempDir();
  const s = serve(payload, { dropFirst: 1 });
  try {
    const r = await download(`${s.url}/f.bin`, `${t.dir}/f.bin`, { backoffMs: 5 });
    assert.equal(r.bytes, payload.length);
    assert.ok(r.resumed);
    assert.deepEqual(await Deno.readFile(`${t.dir}/f.bin`), payload);
    assert.ok(
      s.stats().ranges.some((x) => /^bytes=[1-9]\d*-$/.test(x)),
      `a Range request resumed: ${s.stats().ranges}`,
    );
    assert.equal([...Deno.readDirSync(t.dir)].length, 1, "no .part file left");
  } finally {
    await s.server.shutdown();
  }
});

Deno.test("download: retries 5xx with back-off; 404 fails at once naming the URL", async () => {
  await using t = await tempDir();
  const s = serve(payload, { fail5xx: 2 });
  try {
    await download(`${s.url}/g.bin`, `${t.dir}/g.bin`, { backoffMs: 5 });
    assert.deepEqual(await Deno.readFile(`${t.dir}/g.bin`), payload);
    await assert.rejects(
      download(`${s.url}/missing`, `${t.dir}/m.bin`, { backoffMs: 5 }),
      (e: Error) => e instanceof DownloadError && /missing: HTTP 404/.test(e.message),
    );
  } finally {
    await s.server.shutdown();
  }
});

Deno.test("download: an existing .part file is continued rather than restarted", async () => {
  await using t = await tempDir();
  await Deno.writeFile(`${t.dir}/h.bin.part`, payload.subarray(0, 100_000));
  const s = serve(payload);
  try {
    const r = await download(`${s.url}/h.bin`, `${t.dir}/h.bin`);
    assert.ok(r.resumed);
    assert.deepEqual(s.stats().ranges, ["bytes=100000-"]);
    assert.deepEqual(await Deno.readFile(`${t.dir}/h.bin`), payload);
  } finally {
    await s.server.shutdown();
  }
});

Deno.test("hub URLs encode the revision (refs/convert/parquet)", () => {
  assert.equal(
    hubDatasetUrl("openai/summarize_from_feedback", "comparisons/train/0000.parquet", {
      revision: "refs/convert/parquet",
      endpoint: "http://h",
    }),
    "http://h/datasets/openai/summarize_from_feedback/resolve/refs%2Fconvert%2Fparquet/comparisons/train/0000.parquet",
  );
});
