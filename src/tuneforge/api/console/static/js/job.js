import { $, TERMINAL, api, duration, el, fill, number, params, poll, pretty, start, when } from "./common.js";
import { controls, progressBar } from "./widgets.js";
import { curve, lineChart } from "./plots.js";

const jobId = params().jobId;
let finalPolls = 0;

function summary(detail) {
  const { job, progress } = detail;
  const items = [["Status", el("span", { class: `status ${job.status}`, id: "status", "data-status": job.status }, job.status)],
    ["Kind", job.kind], ["Study", job.kind === "hpo_trial" && job.config?.study
      ? el("a", { href: `/ui/studies/${encodeURIComponent(job.config.study)}`, id: "study" }, job.config.study) : ""],
    ["Model", job.model], ["Progress", progressBar(progress)],
    ["ETA", TERMINAL.has(job.status) ? "" : duration(progress.eta_seconds)], ["Queue position", progress.queue_position ?? ""],
    ["Train loss", number(progress.train_loss)], ["Created", when(job.created_at)], ["Started", when(job.started_at)],
    ["Finished", when(job.finished_at)], ["Fine-tuned model", job.fine_tuned_model ?? ""],
    ["Error", job.error ? job.error.message : ""]];
  return el("dl", {}, items.filter(([, v]) => v !== "").map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function report(detail) {
  const data = detail.report;
  if (!data || !data.tasks) return data ? el("pre", {}, pretty(data)) : "";
  const rows = data.tasks.flatMap((t) => Object.entries(t.metrics).map(([m, v]) => [t.name, m, number(v.value ?? v)]));
  const table = el("table", { class: "grid" }, el("thead", {}, el("tr", {}, ["Task", "Metric", "Value"].map((h) => el("th", {}, h)))), el("tbody"));
  fill(table.querySelector("tbody"), rows);
  return table;
}

function draw(detail) {
  const rows = detail.curves;
  lineChart($("chart-loss"), [{ label: "loss", points: curve(rows, "loss") }, { label: "eval loss", points: curve(rows, "eval_loss") }]);
  lineChart($("chart-lr"), [{ label: "learning rate", points: curve(rows, "learning_rate") }]);
  lineChart($("chart-tps"), [{ label: "tokens/s", points: curve(rows, "tokens_per_second") }]);
}

start(async () => {
  const refresh = async () => {
    const detail = await api(`/ui/api/jobs/${encodeURIComponent(jobId)}`);
    $("summary").replaceChildren(summary(detail));
    $("actions").replaceChildren(controls(detail.job, refresh));
    draw(detail);
    $("events").replaceChildren(...detail.events.map((e) =>
      el("li", { class: e.level }, el("time", {}, when(e.created_at)), " ", e.message)));
    fill($("checkpoints").querySelector("tbody"), detail.checkpoints.map((c) =>
      [c.id, c.step, number(c.metrics?.train_loss), c.path]));
    $("config").textContent = pretty(detail.job.config);
    $("result").textContent = detail.job.result ? pretty(detail.job.result) : "(none yet)";
    $("report").replaceChildren(report(detail));
    finalPolls += TERMINAL.has(detail.job.status) ? 1 : 0;
    return finalPolls > 2; // a few more after the end: late events (registration) still arrive
  };
  poll(refresh);
});
