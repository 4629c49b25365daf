import assert from "node:assert/strict";
import { RewardEncoder } from "../../lib/encoder/encoder.ts";
import { encodeStore, mergeStores, planStore, shardPairs, shardPrefix } from "../../lib/encoder/writer.ts";
import { loadStore } from "../../lib/store/store.ts";
import type { RawPair } from "../../lib/data/pairs.ts";
import { writeTinyModel } from "../fixtures/tiny_model.ts";
import { tempDir } from "../helpers.ts";

function manyPairs(users: number): RawPair[] {
  const out: RawPair[] = [];
  for (let u = 0; u < users; u++) {
    for (let c = 0; c < 3; c++) {
      const prompt = [{ role: "user" as const, content: `user ${u} asks question ${c}?` }];
      out.push({
        user: `u${u}`,
        conversationId: `c${c}`,
        prompt,
        chosen: `a good answer ${u}.${c}`,
        rejected: `bad ${c}`,
      });
      out.push({
        user: `u${u}`,
        conversationId: `c${c}`,
        prompt,
        chosen: `a good answer ${u}.${c}`,
        rejected: `worse ${c}`,
      });
    }
  }
  return out;
}

Deno.test("plan: a chosen reply paired with several rejected ones is one row; users sorted", () => {
  const plan = planStore(manyPairs(2));
  assert.deepEqual(Object.keys(plan.meta), ["u0", "u1"]);
  assert.equal(plan.conversations.length, 2 * 3 * 3, "per conversation: 1 chosen + 2 rejected rows");
  const e = plan.meta.u0;
  assert.equal(e[0].chosen_idx, e[1].chosen_idx);
  assert.notEqual(e[0].rejected_idx, e[1].rejected_idx);
  assert.deepEqual(plan.conversations[e[0].chosen_idx].at(-1), { role: "assistant", content: "a good answer 0.0" });
});

Deno.test("store writer: killed after N rows, the rerun continues from N and ends with the same store", async () => {
  await using t = await tempDir();
  await writeTinyModel(`${t.dir}/m`);
  const enc = await RewardEncoder.load(`${t.dir}/m`, { device: "wasm", batchSize: 4 });
  const plan = () => planStore(manyPairs(4));
  const encode = (c: Parameters<typeof enc.encode>[0]) => enc.encode(c);
  await encodeStore(`${t.dir}/full`, plan(), encode, { chunkRows: 5 });
  const first = await encodeStore(`${t.dir}/cut`, plan(), encode, { chunkRows: 5, stopAfterRows: 12 });
  assert.equal(first.complete, false);
  // a torn chunk: garbage appended after the last whole row must be dropped
  await Deno.writeFile(`${t.dir}/cut.partial/rows.f32`, new Uint8Array(10), { append: true });
  const second = await encodeStore(`${t.dir}/cut`, plan(), encode, { chunkRows: 5 });
  assert.equal(second.complete, true);
  assert.equal(second.resumedFrom, 15);
  const a = await loadStore(`${t.dir}/full`), b = await loadStore(`${t.dir}/cut`);
  assert.deepEqual(b.embeddings, a.embeddings);
  assert.deepEqual(b.meta, a.meta);
  assert.ok(typeof a.meta.u0[0].chosen_score === "number", "scores from the reward head");
  assert.ok(!(await Deno.stat(`${t.dir}/cut.partial`).catch(() => null)), "work folder removed");
});

Deno.test("--shard i/n slices users; merge-shards reproduces the unsharded store", async () => {
  await using t = await tempDir();
  await writeTinyModel(`${t.dir}/m`);
  const enc = await RewardEncoder.load(`${t.dir}/m`, { device: "wasm", batchSize: 4 });
  const pairs = manyPairs(5);
  await encodeStore(`${t.dir}/all`, planStore(pairs), (c) => enc.encode(c));
  const shards = [0, 1, 2].map((index) => ({ index, count: 3 }));
  const users = shards.map((s) => new Set(shardPairs(pairs, s).map((p) => p.user)));
  assert.deepEqual(users.map((u) => u.size), [1, 2, 2]);
  for (const s of shards) {
    await encodeStore(shardPrefix(`${t.dir}/all`, s), planStore(shardPairs(pairs, s)), (c) => enc.encode(c));
  }
  await mergeStores(shards.map((s) => shardPrefix(`${t.dir}/all`, s)), `${t.dir}/merged`);
  const a = await loadStore(`${t.dir}/all`), b = await loadStore(`${t.dir}/merged`);
  // identical up to float rounding (shards batch different sequences together)
  const strip = (m: typeof a.meta) =>
    JSON.stringify(
      Object.entries(m).map(([u, l]) => [u, l.map(({ chosen_score: _c, rejected_score: _r, ...e }) => e)]),
    );
  assert.equal(strip(b.meta), strip(a.meta));
  for (const u of Object.keys(a.meta)) {
    a.meta[u].forEach((e, i) =>
      assert.ok(Math.abs((e.chosen_score as number) - (b.meta[u][i].chosen_score as number)) < 1e-4)
    );
  }
  a.embeddings.forEach((v, i) => assert.ok(Math.abs(v - b.embeddings[i]) < 1e-5));
});
