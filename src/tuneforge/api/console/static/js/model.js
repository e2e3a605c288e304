import { $, api, button, el, fill, number, params, pretty, showError, start, when } from "./common.js";

const name = params().name;
const base = `/api/v1/registry/models/${encodeURIComponent(name)}`;
const mb = (bytes) => (bytes / 1e6).toFixed(1) + " MB";
// {"training": {"eval_loss": 6.85, ...}, "TASK": {"exact_match": 0, "job_id": ...}} -> "training: eval_loss 6.85 ..."
const scoreText = (scores) => Object.entries(scores || {}).map(([group, figures]) => `${group}: ` +
  Object.entries(figures).filter(([, v]) => typeof v === "number").map(([k, v]) => `${k} ${number(v)}`).join(", ")).join("; ");

// version(s) -> job -> dataset sha256 -> base model, then the whole record (config included)
async function lineage(version) {
  const data = await api(`${base}:${version}/lineage`);
  $("lineage-of").textContent = `of ${name}:${version}`;
  const steps = [...data.chain.map((v) => `${v.version} (${v.kind})`),
    data.job ? el("a", { href: `/ui/jobs/${encodeURIComponent(data.job.id)}` }, `${data.job.id} (${data.job.status})`) : null,
    data.dataset_sha256 ? `data sha256 ${data.dataset_sha256.slice(0, 12)}…` : null,
    `base ${data.base_model_name || data.base_model}`].filter(Boolean);
  $("chain").replaceChildren(...steps.flatMap((step, i) => (i ? [" → ", step] : [step])));
  $("lineage").textContent = pretty(data);
}

async function act(request) {
  try {
    await request();
    await refresh();
  } catch (error) {
    showError(error);
  }
}

async function refresh() {
  const model = await api(base);
  const select = $("version");
  const chosen = select.value;
  select.replaceChildren(...model.versions.map((v) => el("option", { value: v.version }, `${v.version} (${v.kind})`)));
  if (chosen) select.value = chosen;
  fill($("aliases").querySelector("tbody"), Object.entries(model.aliases).map(([alias, version]) => [alias, version,
    button("Rollback", () => act(() => api(`${base}/aliases/${encodeURIComponent(alias)}/rollback`, { method: "POST" })))]));
  fill($("versions").querySelector("tbody"), model.versions.map((v) => [v.version, v.kind, v.status, v.aliases.join(", "),
    v.job_id ? el("a", { href: `/ui/jobs/${encodeURIComponent(v.job_id)}` }, v.job_id) : "", v.base_model,
    mb(v.size_bytes), scoreText(v.scores),
    button("Lineage", () => lineage(v.version).catch(showError))]));
  fill($("moves").querySelector("tbody"), model.alias_moves.slice().reverse().map((m) =>
    [when(m.created_at), m.alias, m.from_version ?? "", m.to_version ?? "", m.action, m.actor]));
}

start(async () => {
  $("deploy").addEventListener("submit", (event) => {
    event.preventDefault();
    const alias = $("alias").value.trim();
    act(() => api(`${base}/aliases/${encodeURIComponent(alias)}`, { method: "PUT", body: { version: Number($("version").value) } }));
  });
  await refresh();
});
