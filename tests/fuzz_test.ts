/**
 * Fuzz: random mutations of a small valid store (header bytes, data bytes, truncation,
 * JSON fields, types and indices) through loadStore and one epoch of training. Every
 * outcome must be a success with finite metrics or a clean refusal (FormatError or
 * ConfigError); anything else fails the test. Seeded, so a failure reproduces.
 */
import assert from "node:assert/strict";
import { initBackend } from "../lib/backend.ts";
import { ConfigError, FormatError } from "../lib/errors.ts";
import { preset } from "../lib/presets.ts";
import { runTraining } from "../lib/run/run.ts";
import { loadStore } from "../lib/store/store.ts";
import { mulberry32 } from "../lib/data/synthetic.ts";
import { writeSafetensors } from "../lib/store/safetensors.ts";
import { tempDir, tinyStore } from "./helpers.ts";

const rng = mulberry32;

Deno.test("fuzz: mutated stores load and train, or are refused cleanly (never a crash or a non-finite metric)", async () => {
  await initBackend("wasm");
  await using t = await tempDir();
  const prefix = `${t.dir}/s`;
  const { embeddings } = await tinyStore(prefix, { users: 8, pairs: 6, convs: 3, dim: 8 });
  const st = await Deno.readFile(`${prefix}.safetensors`);
  // JSON mutations pair with embeddings that record no JSON hash (as converted stores), so
  // that they reach the field checks instead of stopping at the hash
  await writeSafetensors(`${t.dir}/plain.safetensors`, { embeddings: { data: embeddings, shape: [96, 8] } });
  const stPlain = await Deno.readFile(`${t.dir}/plain.safetensors`);
  const json = await Deno.readTextFile(`${prefix}.json`);
  const headerEnd = 8 + Number(new DataView(st.buffer).getBigUint64(0, true));
  const r = rng(2026);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const outcomes: Record<string, number> = {};
  const N = 120;
  for (let i = 0; i < N; i++) {
    let bytes = st.slice(), text = json, kind: string;
    const m = Math.floor(r() * 6);
    if (m === 0) {
      kind = "header byte";
      bytes[Math.floor(r() * headerEnd)] = Math.floor(r() * 256);
    } else if (m === 1) {
      kind = "data byte";
      const at = headerEnd + Math.floor(r() * (bytes.length - headerEnd));
      bytes[at] = Math.floor(r() * 256);
    } else if (m === 2) {
      kind = "truncated file";
      bytes = bytes.slice(0, Math.floor(r() * bytes.length));
    } else {
      kind = "json field";
      bytes = stPlain.slice();
      const meta = JSON.parse(json);
      const users = Object.keys(meta);
      const u = pick(users), e = pick(meta[u] as Record<string, unknown>[]);
      const field = pick(["chosen_idx", "rejected_idx", "conversation_id", "split"]);
      const value = pick<unknown>([-1, 1e9, 1.5, "3", null, true, [], {}, "train", "x", 0]);
      if (r() < 0.15) delete e[field];
      else e[field] = value;
      if (r() < 0.1) meta[u] = [];
      text = JSON.stringify(meta);
      if (r() < 0.1) text = text.slice(0, Math.floor(r() * text.length));
      if (r() < 0.1) text = text.replace(`"${users[1]}":`, `"${users[0]}":`);
    }
    await Deno.writeFile(`${prefix}.safetensors`, bytes);
    await Deno.writeTextFile(`${prefix}.json`, text);
    let outcome: string;
    try {
      const store = await loadStore(prefix);
      const c = { ...preset("prism"), epochs: 1, data: prefix };
      const s = await runTraining(store, c, { outDir: `${t.dir}/run${i}` });
      for (const v of [s.last.overall_acc, s.last.seen_acc, s.last.unseen_acc]) {
        assert.ok(Number.isFinite(v), `mutation ${i} (${kind}): non-finite metric ${v}`);
      }
      outcome = "trained";
    } catch (e) {
      if (e instanceof FormatError) outcome = "FormatError";
      else if (e instanceof ConfigError) outcome = "ConfigError";
      else throw new Error(`mutation ${i} (${kind}) escaped as ${(e as Error)?.name}: ${(e as Error)?.message}`);
    }
    outcomes[`${kind}: ${outcome}`] = (outcomes[`${kind}: ${outcome}`] ?? 0) + 1;
  }
  console.log(`fuzz: ${N} mutations`, outcomes);
  assert.ok(Object.keys(outcomes).some((k) => k.endsWith("trained")), "some mutations still train");
  assert.ok(Object.keys(outcomes).some((k) => k.endsWith("Error")), "some mutations are refused");
});
