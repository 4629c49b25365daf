/** Plain-text tables for terminals and logs. */

/** Renders rows under a header with right-aligned numeric columns. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [
    header,
    ...rows.map((r) => r.map((c) => typeof c === "number" ? (Number.isFinite(c) ? c.toFixed(1) : "-") : c)),
  ];
  const w = header.map((_, i) => Math.max(...cells.map((r) => String(r[i] ?? "").length)));
  const line = (r: (string | number)[]) =>
    r.map((c, i) => i === 0 ? String(c).padEnd(w[i]) : String(c).padStart(w[i])).join("  ");
  return [line(cells[0]), w.map((n) => "-".repeat(n)).join("  "), ...cells.slice(1).map(line)].join("\n");
}

/** mean ± std (sample std) as percentages. */
export function meanStd(xs: number[]): { mean: number; std: number; text: string } {
  const n = xs.length;
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, std, text: `${(100 * mean).toFixed(1)} ± ${(100 * std).toFixed(1)}` };
}

/** Mean and worst-10% figures of one group, as stored in summaries and eval results. */
export interface GroupFigures {
  mean: number;
  median?: number;
  worst10: number;
}

/**
 * A table row "name, seen, unseen, overall, [seen median, unseen median,] seen worst10,
 * unseen worst10" in percent.
 */
export function accuracyRow(
  name: string,
  r: { seen: GroupFigures; unseen: GroupFigures; overall: GroupFigures },
  { medians = false }: { medians?: boolean } = {},
): (string | number)[] {
  return [
    name,
    100 * r.seen.mean,
    100 * r.unseen.mean,
    100 * r.overall.mean,
    ...(medians ? [100 * (r.seen.median ?? NaN), 100 * (r.unseen.median ?? NaN)] : []),
    100 * r.seen.worst10,
    100 * r.unseen.worst10,
  ];
}

/** The header matching accuracyRow. */
export function accuracyHeader({ medians = false }: { medians?: boolean } = {}): string[] {
  return [
    "",
    "seen",
    "unseen",
    "overall",
    ...(medians ? ["seen median", "unseen median"] : []),
    "seen worst10",
    "unseen worst10",
  ];
}

/** A fraction as a percentage with one decimal ("-" when not finite). */
export function pct(x: number): string {
  return Number.isFinite(x) ? (100 * x).toFixed(1) : "-";
}
