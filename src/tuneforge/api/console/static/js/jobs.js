import { $, TERMINAL, api, duration, el, fill, poll, start, when } from "./common.js";
import { controls, progressBar } from "./widgets.js";

const selected = new Set();

function row(job, refresh) {
  const box = el("input", { type: "checkbox", checked: selected.has(job.id), "aria-label": "select " + job.id,
    onchange: (e) => { e.target.checked ? selected.add(job.id) : selected.delete(job.id); update(); } });
  return [box, el("a", { href: `/ui/jobs/${encodeURIComponent(job.id)}` }, job.id), job.kind, job.model,
    el("span", { class: `status ${job.status}`, "data-status": job.status }, job.status), progressBar(job.progress),
    TERMINAL.has(job.status) ? "" : duration(job.progress?.eta_seconds), job.queue_position ?? "",
    when(job.created_at), controls(job, refresh)];
}

function update() {
  $("compare-selected").disabled = selected.size < 2;
}

$("compare-selected").addEventListener("click", () => {
  const query = [...selected].map((id) => "job=" + encodeURIComponent(id)).join("&");
  location.assign("/ui/compare?" + query);
});

start(async () => {
  const refresh = async () => {
    const page = await api("/ui/api/jobs");
    const kinds = [...new Set(page.data.map((job) => job.kind))].sort();
    const listed = [...$("kind").options].slice(1).map((o) => o.value);
    if (listed.join() !== kinds.join()) { // rebuilt only when a kind appears: an open list stays open
      const picked = $("kind").value;
      $("kind").replaceChildren(el("option", { value: "" }, "all"), ...kinds.map((k) => el("option", { value: k }, k)));
      $("kind").value = kinds.includes(picked) ? picked : "";
    }
    const shown = page.data.filter((job) => (!$("kind").value || job.kind === $("kind").value)
      && (!$("status").value || job.status === $("status").value));
    fill($("jobs").querySelector("tbody"), shown.map((job) => row(job, refresh)));
    $("empty").hidden = page.data.length > 0;
  };
  for (const id of ["kind", "status"]) $(id).addEventListener("change", refresh);
  poll(async () => { await refresh(); return false; });
});
