/** Linear warm-up then cosine decay to 0 (transformers' get_cosine_schedule_with_warmup). */
export function lrFactor(step: number, totalSteps: number, warmupSteps: number): number {
  if (step < warmupSteps) return step / Math.max(1, warmupSteps);
  const progress = Math.min(1, (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps));
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
}

/** Warm-up steps for a warm-up ratio: `int(ratio * total)` as the release computes it. */
export function warmupSteps(totalSteps: number, ratio: number): number {
  return Math.floor(totalSteps * ratio);
}
