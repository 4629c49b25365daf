import assert from "node:assert/strict";
import { PyRandom } from "../../lib/data/rng.ts";
import { md5Mod32 } from "../../lib/data/md5.ts";

// Expected values printed by CPython 3.11: random.Random(seed).shuffle(list(range(20))),
// .getrandbits(32), .random(), and int(md5(uid).hexdigest(), 16) % 2**32.
const PY = {
  "0": {
    shuffle20: [10, 18, 16, 14, 0, 17, 11, 2, 3, 9, 5, 7, 4, 19, 6, 15, 8, 1, 13, 12],
    bits: 3626764237,
    random: 0.8444218515250481,
  },
  "42": {
    shuffle20: [19, 5, 14, 4, 9, 13, 15, 18, 6, 12, 17, 10, 1, 11, 2, 16, 7, 8, 0, 3],
    bits: 2746317213,
    random: 0.6394267984578837,
  },
  "4294967301": {
    shuffle20: [16, 13, 8, 4, 1, 6, 18, 17, 3, 19, 7, 14, 12, 2, 10, 11, 0, 9, 15, 5],
    bits: 675479763,
    random: 0.15727238718789782,
  },
  "1234567890123": {
    shuffle20: [1, 9, 11, 14, 18, 10, 12, 8, 3, 0, 2, 19, 7, 16, 15, 4, 5, 17, 13, 6],
    bits: 3532746698,
    random: 0.8225316907510454,
  },
};

Deno.test("PyRandom: shuffle, getrandbits and random() match CPython bit for bit", () => {
  for (const [seed, want] of Object.entries(PY)) {
    const x = [...Array(20).keys()];
    new PyRandom(BigInt(seed)).shuffle(x);
    assert.deepEqual(x, want.shuffle20, `seed ${seed}`);
    assert.equal(new PyRandom(BigInt(seed)).getrandbits(32), want.bits);
    assert.equal(new PyRandom(BigInt(seed)).random(), want.random);
  }
});

Deno.test("md5Mod32 matches hashlib, including non-ASCII ids", () => {
  assert.deepEqual(["user_123", "w1", "élan", ""].map(md5Mod32), [4279933000, 1401872057, 2725095374, 3975692926]);
});
