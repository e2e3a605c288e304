import { $, api, el, params, pretty, showError, start } from "./common.js";
import { recordView } from "./widgets.js";

// Answers by format, as services/annotation.py reads them.
const ANSWER_KEYS = { alpaca: "output", prompt_completion: "completion", qa: "answer", preference: "chosen" };
const ANSWER_MESSAGES = { messages: ["messages", "role", ["assistant"], "content"], sharegpt: ["conversations", "from", ["gpt", "assistant"], "value"] };
const ref = params().ref;
const state = { records: [], format: "", at: 0, decisions: new Map() };

function answerOf(record) {
  if (ANSWER_KEYS[state.format]) {
    const value = record[ANSWER_KEYS[state.format]];
    return typeof value === "string" ? value : null;
  }
  const spec = ANSWER_MESSAGES[state.format];
  if (!spec) return null;
  const [key, roleKey, roles, textKey] = spec;
  const turns = (record[key] || []).filter((m) => roles.includes(m[roleKey]));
  return turns.length ? turns[turns.length - 1][textKey] : null;
}

function show() {
  const { record, index } = state.records[state.at];
  const decision = state.decisions.get(index);
  $("position").textContent = `Record ${state.at + 1} of ${state.records.length} (#${index})`;
  const counts = [...state.decisions.values()].reduce((c, d) => ({ ...c, [d.action]: (c[d.action] || 0) + 1 }), {});
  $("tally").textContent = `${counts.accept || 0} accepted, ${counts.reject || 0} rejected`;
  const shown = { ...record };
  const pair = state.format === "preference";
  if (pair) { delete shown.chosen; delete shown.rejected; }
  $("record").replaceChildren(recordView(shown));
  $("pair").hidden = !pair;
  if (pair) {
    $("answer-a").textContent = typeof record.chosen === "string" ? record.chosen : pretty(record.chosen);
    $("answer-b").textContent = typeof record.rejected === "string" ? record.rejected : pretty(record.rejected);
  }
  const answer = answerOf(record);
  $("edit").hidden = answer === null || pair;
  $("answer").value = decision?.answer ?? answer ?? "";
  $("decision").textContent = decision ? `${decision.action}ed${decision.better ? ", " + decision.better.toUpperCase() + " better" : ""}` : "not reviewed";
  $("prev").disabled = state.at === 0;
  $("next").disabled = state.at === state.records.length - 1;
}

function decide(action, better) {
  const { record, index } = state.records[state.at];
  const decision = { index, action };
  const answer = $("answer").value;
  if (action === "accept" && !$("edit").hidden && answer !== answerOf(record)) decision.answer = answer;
  if (better) decision.better = better;
  state.decisions.set(index, decision);
  if (state.at < state.records.length - 1) state.at += 1;
  show();
}

async function save() {
  if (!state.decisions.size) return showError("Review at least one record first.");
  const body = { decisions: [...state.decisions.values()] };
  if ($("make-pairs").checked) body.pairs_to = $("pairs-to").value.trim();
  const saved = await api(`/ui/api/data/${encodeURIComponent(ref)}/annotate`, { method: "POST", body });
  const link = (version) => el("a", { href: `/ui/data/${encodeURIComponent(version.name)}` }, version.ref);
  const box = $("saved");
  box.hidden = false;
  box.replaceChildren(el("p", { id: "new-version" }, "Saved ", link(saved), ` (${saved.records} records, `,
    saved.created ? "new version" : "same content as an existing version", "): ", JSON.stringify(saved.details)),
  saved.pairs ? el("p", { id: "new-pairs" }, "Preference pairs from the edits: ", link(saved.pairs),
    ` (${saved.pairs.records} pairs)`) : "");
  state.decisions.clear();
  show();
}

start(async () => {
  const page = await api(`/ui/api/data/${encodeURIComponent(ref)}/records?limit=500`);
  state.records = page.records;
  state.format = page.format;
  $("pairs-to").value = ref.split(/[:@]/)[0] + "-prefs";
  $("make-pairs").closest("label").hidden = $("pairs-to").hidden = ["preference", "text", "classification"].includes(state.format);
  if (!state.records.length) return showError(`${ref} has no records.`);
  $("accept").addEventListener("click", () => decide("accept"));
  $("reject").addEventListener("click", () => decide("reject"));
  $("pick-a").addEventListener("click", () => decide("accept", "a"));
  $("pick-b").addEventListener("click", () => decide("accept", "b"));
  $("prev").addEventListener("click", () => { state.at -= 1; show(); });
  $("next").addEventListener("click", () => { state.at += 1; show(); });
  $("save").addEventListener("click", () => save().catch(showError));
  show();
});
