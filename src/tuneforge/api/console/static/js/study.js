import { $, api, button, duration, el, fill, number, params, poll, showError, start } from "./common.js";
import { bestText, paramText, stateBadge } from "./widgets.js";
import { lineChart } from "./plots.js";

const name = params().name;
const base = `/api/v1/hpo/studies/${encodeURIComponent(name)}`;
const ENDED = new Set(["finished", "cancelled"]);
let importancesOf = -1; // the number of complete trials the importances shown were computed from
let finalPolls = 0;

function summary(study) {
  const search = study.search || {};
  const objectives = (search.objective || []).map((o, i) => `${o.metric} (${study.directions[i] ?? ""})`).join(", ");
  const done = study.complete + study.pruned + study.failed;
  const best = study.best?.length === 1 ? paramText(study.best[0].params) : "";
  const items = [["State", stateBadge(study.state)], ["Objective", objectives], ["Sampler", search.sampler ?? ""],
    ["Pruner", search.pruner ?? ""], ["Trials", `${done}/${search.n_trials ?? "?"} done: ${study.complete} complete, ` +
      `${study.pruned} pruned, ${study.failed} failed, ${study.running} running`],
    ["Best", bestText(study)], ["Best params", best]];
  return el("dl", {}, items.filter(([, v]) => v !== "").map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

// The buttons the API offers: pause (no new trial starts), resume, cancel (trial jobs cancelled, results kept),
// train best (from the first complete trial on).
function actions(study, refresh) {
  const act = (action) => async () => {
    try {
      await api(`${base}/${action}`, { method: "POST" });
      await refresh();
    } catch (error) {
      showError(error);
    }
  };
  return el("span", { class: "actions" },
    button("Pause", act("pause"), { disabled: study.state !== "running" }),
    button("Resume", act("resume"), { disabled: study.state !== "paused" }),
    button("Cancel", act("cancel"), { disabled: !["running", "paused"].includes(study.state) }),
    button("Train best", trainBest, { disabled: !study.complete, id: "train-best" }));
}

// A normal fine-tuning job of the best config ('tune best NAME --train' on the platform); its page opens.
async function trainBest() {
  try {
    const job = await api(`${base}/train-best`, { method: "POST" });
    location.assign(`/ui/jobs/${encodeURIComponent(job.id)}`);
  } catch (error) {
    showError(error);
  }
}

function trialRow(trial) {
  const seconds = trial.duration ?? (trial.started_at && trial.state === "running" ? Date.now() / 1000 - trial.started_at : null);
  return [trial.number, el("span", { class: `status ${trial.state}`, "data-state": trial.state }, trial.state),
    (trial.values || []).map((v) => number(v)).join(", "), paramText(trial.params), duration(seconds), trial.steps ?? "",
    trial.job_id ? el("a", { href: `/ui/jobs/${encodeURIComponent(trial.job_id)}` }, trial.job_id) : "", trial.error ?? ""];
}

// Value per complete trial and the best so far (first objective), the curves, and the Pareto front of two objectives.
function draw(study) {
  const complete = study.trials.filter((t) => t.state === "complete" && t.values).sort((a, b) => a.number - b.number);
  const better = study.directions[0] === "maximize" ? Math.max : Math.min;
  let best = null;
  const bests = complete.map((t) => [t.number, (best = best === null ? t.values[0] : better(best, t.values[0]))]);
  $("history-of").textContent = study.search?.objective?.[0]?.metric ?? "";
  lineChart($("chart-history"), [{ label: "value", points: complete.map((t) => [t.number, t.values[0]]), dots: true },
    { label: "best so far", points: bests }], { x: "trial" });
  lineChart($("chart-intermediate"), study.trials.filter((t) => t.intermediate.length).map((t) => ({
    label: `trial ${t.number}${t.state === "pruned" ? " (pruned)" : ""}`, points: t.intermediate })));
  const pareto = study.directions.length === 2;
  $("pareto").hidden = !pareto;
  if (pareto) {
    const metrics = (study.search?.objective || []).map((o) => o.metric);
    $("pareto-of").textContent = `${metrics[1]} (y) against ${metrics[0]} (x)`;
    lineChart($("chart-pareto"), [{ label: "trials", points: complete.map((t) => t.values) },
      { label: "Pareto front", points: (study.best || []).map((t) => t.values) }],
    { x: metrics[0] ?? "objective 0", counts: false, dots: true });
  }
}

async function importances(study) {
  if (study.complete < 2 || study.complete === importancesOf) return;
  const data = await api(`${base}/importances`);
  importancesOf = data.complete;
  const blocks = data.objectives.map(({ metric, importances: shares }) => el("div", { class: "importances" },
    el("h3", {}, metric), el("table", { class: "grid" }, el("tbody", {}, Object.entries(shares).map(([param, share]) =>
      el("tr", { "data-param": param }, el("td", {}, param),
        el("td", { class: "share" }, el("span", { class: "bar", style: { width: `${Math.round(share * 100)}%` } })),
        el("td", {}, number(share, 3))))))));
  $("importances").replaceChildren(...(blocks.length ? blocks : [el("p", { class: "muted" }, data.error ?? "none")]));
}

start(async () => {
  const refresh = async () => {
    const study = await api(base);
    $("summary").replaceChildren(summary(study));
    $("actions").replaceChildren(actions(study, refresh));
    fill($("trials").querySelector("tbody"), study.trials.map(trialRow));
    draw(study);
    await importances(study);
    finalPolls += ENDED.has(study.state) && !study.running ? 1 : 0;
    return finalPolls > 2;
  };
  poll(refresh, 2000);
});
