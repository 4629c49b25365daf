import assert from "node:assert/strict";
import { splitUsers, supportQuery } from "../../lib/data/splits.ts";
import type { StoreMeta } from "../../lib/store/store.ts";

// Same construction as make_meta() in tests/fixtures/splits_reference.py; the expected
// splits were computed by that script with CPython (tests/fixtures/splits_expected.json).
function makeMeta(): StoreMeta {
  const meta: StoreMeta = {};
  const users = [...Array(13).keys()].map((i) => `u${i}`).concat(["alice", "Bob", "élève", "z9"]);
  users.forEach((uid, k) => {
    const entries: StoreMeta[string] = [];
    const nConv = 3 + (k * 7) % 9;
    for (let c = 0; c < nConv; c++) {
      for (let j = 0; j < 1 + (k + c) % 3; j++) {
        entries.push({
          conversation_id: k % 2 ? `c${c}` : c,
          chosen_idx: 0,
          rejected_idx: 1,
          split: (c + j + k) % 4 === 0 ? "val" : "train",
        });
      }
    }
    meta[uid] = entries;
  });
  return meta;
}

const expected = JSON.parse(await Deno.readTextFile(new URL("../fixtures/splits_expected.json", import.meta.url)));

Deno.test("splits: PRISM-style split by conversation matches the Python reference", () => {
  assert.deepEqual(splitUsers(makeMeta(), "prism", { seed: 42 }), expected.prism);
});

Deno.test("splits: seen/unseen train limits cap conversations (PRISM) exactly as Python", () => {
  assert.deepEqual(
    splitUsers(makeMeta(), "prism", { seed: 7, seenTrainLimit: 2, unseenTrainLimit: 1 }),
    expected.prism_limited,
  );
});

Deno.test("splits: Reddit-style split by the split field, shuffled then capped, matches Python", () => {
  assert.deepEqual(
    splitUsers(makeMeta(), "reddit", { seed: 42, seenTrainLimit: 5, unseenTrainLimit: 3 }),
    expected.reddit,
  );
});

Deno.test("splits: per-epoch support/query by conversation matches Python", () => {
  const meta = makeMeta();
  const s = splitUsers(meta, "prism", { seed: 42 });
  const got = Object.fromEntries(
    s.seen.map((
      uid,
      i,
    ) => [uid, supportQuery(meta[uid], s.users[uid].train, { seed: 42, userIndex: i, epoch: 3, valRatio: 0.9 })]),
  );
  assert.deepEqual(got, expected.support_query);
});

Deno.test("splits: one conversation is both support and query; users without test are dropped", () => {
  const entries = [{ conversation_id: "a", chosen_idx: 0, rejected_idx: 1 }, {
    conversation_id: "a",
    chosen_idx: 0,
    rejected_idx: 1,
  }];
  assert.deepEqual(supportQuery(entries, [0, 1], { seed: 1, userIndex: 0, epoch: 0, valRatio: 0.9 }), {
    support: [0, 1],
    query: [0, 1],
  });
  const s = splitUsers({ solo: entries, other: entries }, "prism");
  assert.deepEqual(s.users, {}, "a single conversation cannot fill both train and test");
});
