/** `deno task synth`: write a synthetic store with known ground truth. */
import { SYNTH_PRESETS, writeSynthetic } from "../lib/data/synthetic.ts";
import { ConfigError } from "../lib/errors.ts";
import { main, parse } from "./_cli.ts";
import { exists } from "../lib/fsutil.ts";

const HELP = `deno task synth [flags]
Writes <out>.safetensors, <out>.json and <out>.truth.json (per-pair oracle probabilities).
  --preset NAME           prism: many users, 6-30 conversations of 1-3 pairs (default)
                          reddit: few users, 200 train + 60 val pairs, split field
                          few-pairs: 1000 users, 3-5 conversations of 1-2 pairs
                          hard-tail: half of the users contrarian or long-tail
                          many-directions: tastes mix 6 latent directions (> K=2)
  --users N               number of users (default prism 400, reddit 40)
  --dim H                 embedding dimension (default 256)
  --seed N                generator seed (default 42)
  --hard_share X          share of hard users, half contrarian, half long-tail (default 0.2)
  --latent L              latent reward directions, >= 4 (default 4)
  --out PREFIX            output prefix (default data/emb/synthetic/<preset>)
  --overwrite             replace an existing store at the prefix (refused otherwise)`;

await main(async () => {
  const v = parse(Deno.args, {
    help: { type: "boolean", short: "h" },
    preset: { type: "string" },
    users: { type: "string" },
    dim: { type: "string" },
    seed: { type: "string" },
    hard_share: { type: "string" },
    latent: { type: "string" },
    out: { type: "string" },
    overwrite: { type: "boolean" },
  });
  if (v.help) return console.log(HELP);
  const name = String(v.preset ?? "prism");
  const p = SYNTH_PRESETS[name];
  if (!p) throw new ConfigError(`--preset must be one of ${Object.keys(SYNTH_PRESETS).join(", ")}, got '${name}'`);
  const num = (flag: string, d: number, int = true) => {
    const raw = v[flag];
    if (raw === undefined) return d;
    const n = Number(raw);
    if (!Number.isFinite(n) || (int && !Number.isInteger(n)) || n < 0) {
      throw new ConfigError(`--${flag} expects a non-negative ${int ? "integer" : "number"}, got '${raw}'`);
    }
    return n;
  };
  const opts = {
    ...p,
    users: num("users", p.users),
    dim: num("dim", p.dim),
    seed: num("seed", 42),
    hardShare: num("hard_share", p.hardShare ?? 0.2, false),
    latent: num("latent", p.latent ?? 4),
  };
  if (opts.users < 2) throw new ConfigError("--users must be at least 2 (half are seen, half unseen)");
  if (opts.latent < 4 || opts.dim < opts.latent) throw new ConfigError("--latent must be >= 4 and <= --dim");
  const out = String(v.out ?? `data/emb/synthetic/${name}`);
  // the default prefix of the prism preset is the demo's store (and compare's default): never replace a store silently
  if (!v.overwrite && (await exists(`${out}.safetensors`) || await exists(`${out}.json`))) {
    throw new ConfigError(`a store already exists at '${out}' (pass --out PREFIX for a new one, or --overwrite)`);
  }
  const t0 = performance.now();
  const r = await writeSynthetic(out, opts);
  const kinds: Record<string, number> = {};
  for (const u of Object.values(r.truth.users)) kinds[u.kind] = (kinds[u.kind] ?? 0) + 1;
  console.log(
    `wrote ${out}.{safetensors,json,truth.json}: ${opts.users} users (${
      Object.entries(kinds).map(([k, n]) => `${n} ${k}`).join(", ")
    }), ${r.pairs} pairs, ${r.rows} rows x H=${opts.dim} in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
});
