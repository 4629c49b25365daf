/** `deno task splits`: print the user split the trainer would use, as JSON (docs/formats.md). */
import { detectSplitStyle, splitUsers } from "../lib/data/splits.ts";
import { ConfigError } from "../lib/errors.ts";
import { writeFileAtomic } from "../lib/fsutil.ts";
import { resolvePrefix } from "./_store_path.ts";
import { readStoreMeta } from "../lib/store/store.ts";
import { main, parse } from "./_cli.ts";

const HELP = `deno task splits (--data PREFIX | --meta_json FILE) --dataset prism|reddit [flags]
  --seed N                (default 42)
  --seen_train_limit N    (default -1 = none)
  --unseen_train_limit N  (default -1 = none)
  --out FILE              write there instead of stdout`;

await main(async () => {
  const v = parse(Deno.args, {
    help: { type: "boolean", short: "h" },
    data: { type: "string" },
    meta_json: { type: "string" },
    dataset: { type: "string" },
    seed: { type: "string" },
    seen_train_limit: { type: "string" },
    unseen_train_limit: { type: "string" },
    out: { type: "string" },
  });
  if (v.help) return console.log(HELP);
  if (v.data === undefined && v.meta_json === undefined) {
    throw new ConfigError("give --data <prefix> or --meta_json <file>");
  }
  const file = typeof v.meta_json === "string" ? v.meta_json : `${resolvePrefix(v as Record<string, string>, "")}.json`;
  const meta = await readStoreMeta(file);
  const ds = v.dataset === undefined ? detectSplitStyle(meta) : String(v.dataset);
  const style = ds.startsWith("reddit") ? "reddit" : ds === "prism" ? "prism" : undefined;
  if (!style) throw new ConfigError(`--dataset must be prism or reddit, got '${ds}'`);
  const int = (flag: string, d: number) => {
    const raw = v[flag];
    if (raw === undefined) return d;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < -1) throw new ConfigError(`--${flag} expects an integer >= -1, got '${raw}'`);
    return n;
  };
  const splits = splitUsers(meta, style, {
    seed: int("seed", 42),
    seenTrainLimit: int("seen_train_limit", -1),
    unseenTrainLimit: int("unseen_train_limit", -1),
  });
  const text = JSON.stringify(splits) + "\n";
  if (typeof v.out === "string") await writeFileAtomic(v.out, text);
  else await Deno.stdout.write(new TextEncoder().encode(text));
});
