import { TERMINAL, api, button, el, number, pretty, showError } from "./common.js";

// A job's cancel / pause / resume buttons and its progress bar (jobs page and job page).
export function controls(job, refresh) {
  const act = (action) => async () => {
    try {
      await api(`/ui/api/jobs/${encodeURIComponent(job.id)}/${action}`, { method: "POST" });
      await refresh();
    } catch (error) {
      showError(error);
    }
  };
  const live = !TERMINAL.has(job.status);
  return el("span", { class: "actions" },
    button("Cancel", act("cancel"), { disabled: !live }),
    button("Pause", act("pause"), { disabled: !["queued", "running"].includes(job.status) }),
    button("Resume", act("resume"), { disabled: job.status !== "paused" }));
}

export function progressBar(progress) {
  const { step, total_steps: total } = progress || {};
  if (!total) return step ? `step ${step}` : "";
  const percent = Math.min(100, Math.round((100 * step) / total));
  return el("span", { class: "progress", title: `${step}/${total}` },
    el("span", { class: "bar", style: { width: `${percent}%` } }), ` ${step}/${total}`);
}


// A record as a reader wants it: a conversation turn by turn, else its fields (dataset browser, annotation).
export function recordView(record) {
  const turns = record.messages || record.conversations;
  if (Array.isArray(turns)) {
    return el("div", { class: "turns" }, turns.map((m) => {
      const role = m.role || m.from || "?";
      return el("div", { class: `turn ${role}` }, el("b", {}, role), " ", m.content ?? m.value ?? pretty(m));
    }));
  }
  return el("dl", { class: "fields" }, Object.entries(record).map(([key, value]) =>
    [el("dt", {}, key), el("dd", {}, typeof value === "string" ? value : pretty(value))]));
}

// A study's state as a badge (the jobs' colours: running, paused, cancelled; finished as succeeded).
export const stateBadge = (state) => el("span", { class: `status ${state === "finished" ? "succeeded" : state}`,
  "data-state": state }, state ?? "");
export const paramText = (params) => Object.entries(params || {}).map(([k, v]) => `${k}=${number(v)}`).join(", ");
// The best value of a single-objective study, or the size of a multi-objective study's Pareto front.
export function bestText(study) {
  const best = study.best || [];
  if (!best.length) return "";
  return study.directions.length > 1 ? `${best.length} on the Pareto front` : `${number(best[0].values[0])} (trial ${best[0].number})`;
}
