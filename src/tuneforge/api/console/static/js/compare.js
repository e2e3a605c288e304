import { $, api, el, fill, number, start } from "./common.js";
import { curve, lineChart } from "./plots.js";

const FIGURES = ["loss", "eval_loss", "best_eval_loss", "learning_rate", "tokens_per_second", "step"];

function metricTable(runs) {
  const keys = [...FIGURES.filter((k) => runs.some((r) => r.final[k] !== undefined)),
    ...new Set(runs.flatMap((r) => Object.keys(r.final)).filter((k) => !FIGURES.includes(k)))];
  $("metrics").querySelector("thead").replaceChildren(
    el("tr", {}, ["Job", "Kind", "Model", "Status", ...keys].map((h) => el("th", {}, h))));
  fill($("metrics").querySelector("tbody"), runs.map((r) => [
    el("a", { href: `/ui/jobs/${encodeURIComponent(r.id)}` }, r.id), r.kind, r.model, r.status,
    ...keys.map((k) => number(r.final[k]))]));
}

function verdict(comparison) {
  if (!comparison) return;
  if (comparison.error) return $("verdict").replaceChildren(el("p", {}, "No verdict: " + comparison.error));
  const table = el("table", { class: "grid" },
    el("thead", {}, el("tr", {}, ["Task", "Metric", "A", "B", "B − A", "Interval", "McNemar p", "Verdict"].map((h) => el("th", {}, h)))),
    el("tbody"));
  fill(table.querySelector("tbody"), comparison.metrics.map((m) => [m.task, m.metric, number(m.a), number(m.b),
    number(m.difference), `[${number(m.ci_low)}, ${number(m.ci_high)}]`, number(m.mcnemar_p), m.verdict]));
  $("verdict").replaceChildren(
    el("p", { id: "overall" }, `A = ${comparison.models[0]} (${comparison.jobs[0]}), B = ${comparison.models[1]} ` +
      `(${comparison.jobs[1]}): ${comparison.verdict} on ${comparison.primary} at ${comparison.confidence} confidence`),
    table);
}

async function show(ids) {
  const query = ids.map((id) => "job=" + encodeURIComponent(id)).join("&");
  const { runs, comparison } = await api("/ui/api/compare?" + query);
  const trained = runs.filter((r) => r.curves.length);
  lineChart($("chart-loss"), trained.map((r) => ({ label: r.id, points: curve(r.curves, "loss") })));
  lineChart($("chart-eval"), trained.map((r) => ({ label: r.id, points: curve(r.curves, "eval_loss") })));
  metricTable(runs);
  verdict(comparison);
}

start(async () => {
  const ids = new URLSearchParams(location.search).getAll("job");
  $("job-ids").value = ids.join(", ");
  $("pick").addEventListener("submit", (event) => {
    event.preventDefault();
    const picked = $("job-ids").value.split(/[\s,]+/).filter(Boolean);
    location.assign("/ui/compare?" + picked.map((id) => "job=" + encodeURIComponent(id)).join("&"));
  });
  if (ids.length >= 2) await show(ids);
});
