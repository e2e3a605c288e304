import { $, api, button, el, fill, params, showError, start, when } from "./common.js";
import { recordView } from "./widgets.js";

const name = params().name;
const PAGE = 20;
const state = { ref: null, offset: 0, matched: 0 };

// A quality report as sections of "path: value" lines (long lists shortened).
function flatten(value, path, out) {
  const entries = value !== null && typeof value === "object" && !Array.isArray(value) ? Object.entries(value) : null;
  if (entries && entries.length > 8) {
    out.push([path, entries.slice(0, 8).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ") + `, … ${entries.length} items`]);
  } else if (entries) {
    for (const [k, v] of Object.entries(value)) flatten(v, path ? `${path}.${k}` : k, out);
  } else {
    const text = Array.isArray(value) ? (value.length > 8 ? `[${value.slice(0, 8).join(", ")}, … ${value.length} items]` : `[${value.join(", ")}]`) : String(value);
    out.push([path, text]);
  }
  return out;
}

async function report(ref) {
  $("report-of").textContent = "of " + ref;
  $("report").replaceChildren(el("p", { class: "muted" }, "measuring…"));
  const data = await api(`/api/v1/data/${encodeURIComponent(ref)}/report`, { method: "POST", body: {} });
  $("report").replaceChildren(...Object.entries(data).map(([section, value]) => el("details", { open: section !== "version" },
    el("summary", {}, section), el("dl", {}, flatten(value, "", []).map(([k, v]) => [el("dt", {}, k || section), el("dd", {}, v)])))));
}

async function records() {
  if (!state.ref) return;
  const q = encodeURIComponent($("query").value);
  const page = await api(`/ui/api/data/${encodeURIComponent(state.ref)}/records?q=${q}&offset=${state.offset}&limit=${PAGE}`);
  state.matched = page.matched;
  $("records-of").textContent = "of " + page.version;
  $("matched").textContent = `${page.matched} of ${page.total} records match; showing ${Math.min(page.matched, state.offset + 1)}–${Math.min(page.matched, state.offset + PAGE)}`;
  $("records").replaceChildren(...page.records.map((r) => el("div", { class: "record" },
    el("span", { class: "index" }, "#" + r.index), recordView(r.record))));
}

function browse(ref) {
  state.ref = ref;
  state.offset = 0;
  records().catch(showError);
}

start(async () => {
  const { data } = await api(`/api/v1/data/${encodeURIComponent(name)}/versions`);
  fill($("versions").querySelector("tbody"), data.slice().reverse().map((v) => [v.ref, v.operation, v.format, v.records,
    Object.keys(v.details || {}).length ? JSON.stringify(v.details) : "", when(v.created_at),
    el("span", { class: "actions" }, button("Browse", () => browse(v.ref)), button("Report", () => report(v.ref).catch(showError)),
      el("a", { href: `/ui/annotate/${encodeURIComponent(v.ref)}`, class: "button" }, "Annotate"))]));
  $("search").addEventListener("submit", (event) => { event.preventDefault(); state.offset = 0; records().catch(showError); });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); records().catch(showError); });
  $("next").addEventListener("click", () => {
    if (state.offset + PAGE < state.matched) state.offset += PAGE;
    records().catch(showError);
  });
  if (data.length) browse(data[data.length - 1].ref);
});
