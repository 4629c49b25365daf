/** SVG charts from Vega-Lite specs, rendered without a DOM. */
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import { writeFileAtomic } from "../fsutil.ts";

/** Renders a Vega-Lite spec to SVG text. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

/** Renders and writes a chart atomically. */
export async function writeChart(path: string, spec: TopLevelSpec): Promise<void> {
  await writeFileAtomic(path, await renderSvg(spec));
}

/** The common part of every chart: schema, title, inline data, size. */
function frame(title: string, rows: unknown[], width: number, height: number): Record<string, unknown> {
  return { $schema: "https://vega.github.io/schema/vega-lite/v6.json", title, data: { values: rows }, width, height };
}

/** Mean accuracy per method and group with ±1 std error bars (over seeds). */
export function accuracyBarSpec(rows: { method: string; group: string; acc: number }[], title: string): TopLevelSpec {
  return {
    ...frame(title, rows, 120, 220),
    facet: { column: { field: "group", type: "nominal", title: null } },
    spec: {
      layer: [
        {
          mark: "bar",
          encoding: {
            x: { field: "method", type: "nominal", title: null, sort: null },
            y: {
              aggregate: "mean",
              field: "acc",
              type: "quantitative",
              title: "user-level accuracy",
              scale: { zero: false },
            },
            color: { field: "method", type: "nominal", legend: null },
          },
        },
        {
          mark: { type: "errorbar", extent: "stdev" },
          encoding: {
            x: { field: "method", type: "nominal", sort: null },
            y: { field: "acc", type: "quantitative" },
          },
        },
      ],
    },
  } as TopLevelSpec;
}

/** Distribution of per-user accuracy for each method (box plots). */
export function userDistributionSpec(rows: { method: string; accuracy: number }[], title: string): TopLevelSpec {
  return {
    ...frame(title, rows, 420, 240),
    mark: { type: "boxplot", extent: 1.5 },
    encoding: {
      x: { field: "method", type: "nominal", sort: null, title: null },
      y: { field: "accuracy", type: "quantitative", title: "per-user test accuracy" },
      color: { field: "method", type: "nominal", legend: null },
    },
  } as TopLevelSpec;
}

/** Accuracy against shots per method (with an oracle line when given). */
export function fewShotSpec(rows: { method: string; shots: number; acc: number }[], title: string): TopLevelSpec {
  return {
    ...frame(title, rows, 420, 260),
    mark: { type: "line", point: true },
    encoding: {
      x: { field: "shots", type: "quantitative", scale: { type: "log" }, title: "train pairs per unseen user" },
      y: {
        aggregate: "mean",
        field: "acc",
        type: "quantitative",
        title: "unseen user accuracy",
        scale: { zero: false },
      },
      color: { field: "method", type: "nominal" },
    },
  } as TopLevelSpec;
}

/** Validation against test accuracy per sweep setting. */
export function sweepSpec(
  rows: { setting: string; val: number; test: number; role: string }[],
  title: string,
): TopLevelSpec {
  return {
    ...frame(title, rows, 360, 300),
    mark: { type: "point", filled: true, size: 80 },
    encoding: {
      x: {
        field: "val",
        type: "quantitative",
        title: "validation accuracy (seen users, held out)",
        scale: { zero: false },
      },
      y: { field: "test", type: "quantitative", title: "test accuracy (overall)", scale: { zero: false } },
      color: { field: "role", type: "nominal", title: null },
      tooltip: [{ field: "setting" }],
    },
  } as TopLevelSpec;
}

/** Accuracy per evaluated epoch (seen, unseen, overall, and the worst-10% means). */
export function learningCurveSpec(rows: { epoch: number; series: string; acc: number }[], title: string): TopLevelSpec {
  return {
    ...frame(title, rows, 420, 240),
    mark: { type: "line", point: true },
    encoding: {
      x: { field: "epoch", type: "quantitative" },
      y: { field: "acc", type: "quantitative", title: "user-level test accuracy", scale: { zero: false } },
      color: { field: "series", type: "nominal", title: null },
    },
  } as TopLevelSpec;
}

/** Histogram of per-user accuracy by group. */
export function userHistogramSpec(rows: { group: string; accuracy: number }[], title: string): TopLevelSpec {
  return {
    ...frame(title, rows, 420, 200),
    mark: { type: "bar", opacity: 0.7 },
    encoding: {
      x: { field: "accuracy", type: "quantitative", bin: { maxbins: 20 }, title: "per-user test accuracy" },
      y: { aggregate: "count", type: "quantitative", title: "users", stack: null },
      color: { field: "group", type: "nominal" },
    },
  } as TopLevelSpec;
}
