import assert from "node:assert/strict";
import { conversationPairs, prismPairs } from "../../lib/data/prism.ts";
import { readBatchRows, readParquetRows, redditPairs } from "../../lib/data/reddit.ts";
import { comparisonsParquet, prismFixture, redditRows, richConversation } from "../fixtures/raw_data.ts";
import { tempDir } from "../helpers.ts";

Deno.test("PRISM: qualifying turns, chosen x each rejected, history of earlier qualifying turns only", () => {
  const c = richConversation("c1", "u") as { conversation_history: never[] };
  const r = conversationPairs("u", "c1", c.conversation_history);
  assert.equal(r.turns, 3);
  assert.equal(r.qualifying, 2, "turn 1 has two chosen replies and no rejected one");
  assert.deepEqual(r.pairs.map((p) => [p.chosen, p.rejected]), [
    ["best c1", "r1 c1"],
    ["best c1", "r2 c1"],
    ["best c1", "EMPTY STRING"],
    ["b c1", "a c1"],
  ]);
  assert.deepEqual(r.pairs[0].prompt, [{ role: "user", content: "q0 c1" }]);
  // turn 2's context skips turn 1 (not qualifying)
  assert.deepEqual(r.pairs[3].prompt, [
    { role: "user", content: "q0 c1" },
    { role: "assistant", content: "best c1" },
    { role: "user", content: "q2 c1" },
  ]);
});

Deno.test("PRISM: users with no conversation or fewer than 6 remaining are dropped; counts", () => {
  const f = prismFixture();
  const { pairs, stats } = prismPairs({ file: "survey.jsonl", text: f.survey }, {
    file: "conversations.jsonl",
    text: f.conversations,
  });
  assert.deepEqual(new Set(pairs.map((p) => p.user)), new Set(["alice"]));
  assert.equal(stats.users, 1);
  assert.equal(stats.conversations, 6);
  assert.equal(stats.pairs, 9);
  assert.equal(stats.survey_users, 3);
  assert.equal(stats.users_with_conversations, 2, "carol's quota is not a conversation count");
  assert.equal(stats.conversations_with_a_qualifying_turn, 11, "bob's dead conversation is the only one dropped");
  assert.equal(stats.pairs_with_empty_reply, 1);
  assert.throws(
    () => prismPairs({ file: "s", text: f.survey }, { file: "conversations.jsonl", text: "{bad\n" }),
    /conversations\.jsonl: line 1 is not valid JSON/,
  );
});

Deno.test("Reddit (Hub parquet): nested columns read; workers in both splits; CNN/DM prompt from the article", async () => {
  await using t = await tempDir();
  const rows = redditRows();
  await Deno.writeFile(`${t.dir}/train.parquet`, comparisonsParquet(rows.train));
  await Deno.writeFile(`${t.dir}/val.parquet`, comparisonsParquet(rows.validation));
  const { pairs, stats } = redditPairs([
    { file: "train", rows: await readParquetRows(`${t.dir}/train.parquet`), split: "train" },
    { file: "val", rows: await readParquetRows(`${t.dir}/val.parquet`), split: "val" },
  ]);
  assert.deepEqual([...new Set(pairs.map((p) => p.user))], ["w1"]);
  assert.deepEqual(pairs.map((p) => [p.conversationId, p.chosen, p.rejected, p.split]), [
    ["p1", "s0 p1", "s1 p1", "train"],
    ["p2", "s1 p2", "s0 p2", "train"],
    ["p4", "s1 p4", "s0 p4", "val"],
    ["p5", "s0 p5", "s1 p5", "val"],
  ]);
  assert.equal(pairs[0].prompt, "post p1");
  assert.equal(pairs[3].prompt, "article p5");
  assert.equal(stats.article_prompts, 1);
  assert.equal(stats.workers, 3);
  await Deno.writeFile(`${t.dir}/bad.parquet`, new Uint8Array([1, 2, 3]));
  await assert.rejects(readParquetRows(`${t.dir}/bad.parquet`), /bad\.parquet: not a readable parquet file/);
});

Deno.test("Reddit (original batch files): raw split values train/valid1/valid2 map to train/val", async () => {
  await using t = await tempDir();
  const rows = redditRows();
  const all = [...rows.train, ...rows.validation];
  await Deno.writeTextFile(`${t.dir}/batch3.json`, all.map((r) => JSON.stringify(r)).join("\n"));
  const { pairs } = redditPairs([{ file: "batch3.json", rows: await readBatchRows(`${t.dir}/batch3.json`) }]);
  assert.deepEqual(pairs.map((p) => p.split), ["train", "train", "val", "val"]);
  assert.throws(
    () => redditPairs([{ file: "b.json", rows: [{ ...rows.train[0], split: "test" } as never] }]),
    /b\.json: unexpected split value "test"/,
  );
});
