/**
 * mrm-p's start (the low-rank multi-user fit and its empirical-Bayes prior) against the
 * shared Bradley–Terry fit its earlier start was built on (the `bt` baseline: 30 epochs
 * of Adam on the seen users' pairs), on the same seen users, in one run:
 *
 * - a PRISM-like store at H=256 (400 users): the fit runs at full width;
 * - the PRISM-size store at H=4096 (1000 users): the fit runs in its 256-dim user space.
 *
 *   deno bench -A bench/personal_init_bench.ts
 */
import { initBackend } from "../lib/backend.ts";
import { trainLinear } from "../lib/baselines/linear.ts";
import { MRM_P_DEFAULTS, preset } from "../lib/presets.ts";
import { prepareTasks } from "../lib/run/run.ts";
import { initPersonal } from "../lib/train/personal_init.ts";
import { prismSizeStore } from "./_setup.ts";

const backend = await initBackend("wasm");
for (const [users, dim] of [[400, 256], [1000, 4096]]) {
  const store = prismSizeStore(users, dim);
  const { seen } = prepareTasks(store, { ...preset("synthetic"), data: store.prefix });
  const group = `start H=${dim}`;
  Deno.bench({
    name: `mrm-p start: low-rank fit + prior, ${seen.length} seen users, H=${dim} (${backend})`,
    group,
    n: 2,
    warmup: 0,
    fn: async () => {
      await initPersonal(store.embeddings, dim, seen, {
        k: MRM_P_DEFAULTS.hiddenSizes[0],
        ridge: MRM_P_DEFAULTS.ridge,
        shrink: MRM_P_DEFAULTS.shrink,
        seed: 42,
      });
    },
  });
  Deno.bench({
    name: `shared BT fit (bt baseline), same users, H=${dim} (${backend})`,
    group,
    baseline: true,
    n: 2,
    warmup: 0,
    fn: async () => {
      await trainLinear(store.embeddings, dim, seen, { k: 1, personalized: false, seed: 42 });
    },
  });
}
