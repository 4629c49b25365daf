/** `deno task merge-shards`: join `<prefix>.shard-i-of-n` stores into `<prefix>`. */
import { mergeStores, shardPrefix } from "../lib/encoder/writer.ts";
import { ConfigError } from "../lib/errors.ts";
import { main, parse, parseStoreDtype } from "./_cli.ts";

await main(async () => {
  const v = parse(Deno.args, {
    help: { type: "boolean", short: "h" },
    save_prefix: { type: "string" },
    num_shards: { type: "string" },
    dtype: { type: "string" },
  });
  if (v.help) {
    return console.log(
      "deno task merge-shards --save_prefix P --num_shards N [--dtype f32|f16|bf16]\nJoins P.shard-0-of-N ... P.shard-(N-1)-of-N into P.safetensors + P.json (identical to an unsharded run).",
    );
  }
  if (typeof v.save_prefix !== "string") throw new ConfigError("--save_prefix is required");
  const n = Number(v.num_shards);
  if (!Number.isInteger(n) || n < 1) {
    throw new ConfigError(`--num_shards expects a positive integer, got '${v.num_shards}'`);
  }
  const prefixes = Array.from({ length: n }, (_, i) => shardPrefix(v.save_prefix as string, { index: i, count: n }));
  const dtype = parseStoreDtype(v.dtype);
  const r = await mergeStores(prefixes, v.save_prefix, { dtype });
  console.log(`merged ${n} shards: ${r.users} users, ${r.rows} rows -> ${v.save_prefix}.{safetensors,json}`);
});
