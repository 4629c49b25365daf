import assert from "node:assert/strict";
import { generateSynthetic } from "../lib/data/synthetic.ts";
import { detectSplitStyle } from "../lib/data/splits.ts";

Deno.test("synthetic PRISM-like: 6-30 conversations of 1-3 pairs, chosen shared within a conversation, truth per pair", () => {
  const { embeddings, meta, truth } = generateSynthetic({ preset: "prism", users: 50, dim: 12, seed: 1 });
  assert.equal(detectSplitStyle(meta), "prism");
  for (const [uid, entries] of Object.entries(meta)) {
    const convs = new Map<unknown, typeof entries>();
    for (const e of entries) convs.set(e.conversation_id, [...(convs.get(e.conversation_id) ?? []), e]);
    assert.ok(convs.size >= 6 && convs.size <= 30, `${uid}: ${convs.size} conversations`);
    for (const list of convs.values()) {
      assert.ok(list.length >= 1 && list.length <= 3);
      assert.equal(new Set(list.map((e) => e.chosen_idx)).size, 1);
    }
    assert.equal(truth.oracle[uid].length, entries.length);
    assert.ok(truth.oracle[uid].every((p) => p > 0 && p < 1));
  }
  assert.equal(embeddings.length % 12, 0);
  const kinds = Object.values(truth.users).map((u) => u.kind);
  assert.ok(kinds.includes("typical") && kinds.includes("contrarian") && kinds.includes("long_tail"));
});

Deno.test("synthetic labels follow the Bradley-Terry draw: chosen wins with its oracle probability on average", () => {
  const { truth } = generateSynthetic({ preset: "reddit", users: 10, dim: 8, seed: 3, redditPairs: [300, 50] });
  const p = Object.values(truth.oracle).flat();
  // E[label agrees with the true reward] = mean(p) for BT-drawn labels; well above chance
  const mean = p.reduce((a, b) => a + b, 0) / p.length;
  assert.ok(mean > 0.7 && mean < 0.95, `mean oracle probability ${mean}`);
  const majority = p.filter((v) => v > 0.5).length / p.length;
  assert.ok(majority > 0.7, `oracle-correct share ${majority}`);
});
