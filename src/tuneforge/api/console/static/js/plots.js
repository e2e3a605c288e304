// Line charts over steps with the vendored uPlot: one x axis (step), one line per series.
import uPlot from "/ui/static/vendor/uPlot.esm.js";

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const charts = new WeakMap();
// Axis labels that stay readable for learning rates (2e-4) as for losses (6.5) and throughputs (4,000).
const short = (v) => (v === 0 ? "0" : Math.abs(v) < 1e-2 || Math.abs(v) >= 1e5 ? v.toExponential(1) : String(Number(v.toPrecision(3))));

// series: [{label, points: [[x, value], ...], dots?}]; redraws only when the data changed. Options: the x axis's label,
// whether x counts (steps, trial numbers: whole ticks), and dots (no lines: a scatter, e.g. a Pareto front).
export function lineChart(container, series, { x = "step", counts = true, dots = false } = {}) {
  const steps = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const columns = series.map((s) => {
    const byStep = new Map(s.points);
    return steps.map((step) => (byStep.has(step) ? byStep.get(step) : null));
  });
  const data = [steps, ...columns];
  const points = series.reduce((n, s) => n + s.points.length, 0);
  const signature = JSON.stringify([x, series.map((s) => s.label), data]);
  const old = charts.get(container);
  if (old && old.signature === signature) return;
  if (old) old.plot.destroy();
  container.dataset.points = String(points);
  container.dataset.series = String(series.length);
  if (!points) {
    container.replaceChildren(Object.assign(document.createElement("p"), { className: "muted", textContent: "no data yet" }));
    charts.delete(container);
    return;
  }
  container.replaceChildren();
  const options = {
    width: Math.max(container.clientWidth || 0, 320), height: 220,
    scales: { x: { time: false } },
    axes: [{ label: x, ...(counts ? { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] } : { values: (u, values) => values.map(short) }) },
      { size: 70, values: (u, values) => values.map(short) }],
    series: [{ label: x }, ...series.map((s, i) => ({
      label: s.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true,
      points: dots || s.dots ? { show: true, size: 8, fill: COLORS[i % COLORS.length] } : { show: s.points.length < 60 },
      ...(dots || s.dots ? { paths: () => null } : {}),
    }))],
  };
  charts.set(container, { signature, plot: new uPlot(options, data, container) });
}

// [{step, key: value}] rows -> [[step, value]] of one key.
export const curve = (rows, key) => rows.filter((r) => typeof r[key] === "number").map((r) => [r.step, r[key]]);
