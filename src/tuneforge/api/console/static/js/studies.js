import { $, api, el, fill, poll, start } from "./common.js";
import { bestText, paramText, stateBadge } from "./widgets.js";

function row(study) {
  const [best] = study.best || [];
  const done = study.complete + study.pruned + study.failed;
  return [el("a", { href: `/ui/studies/${encodeURIComponent(study.name)}` }, study.name), stateBadge(study.state),
    `${done}/${study.search?.n_trials ?? "?"}`, study.complete, study.pruned, study.failed, study.running,
    bestText(study), study.best?.length === 1 ? paramText(best.params) : ""];
}

start(async () => {
  poll(async () => {
    const { data } = await api("/api/v1/hpo/studies");
    fill($("studies").querySelector("tbody"), data.map(row));
    $("empty").hidden = data.length > 0;
    return false;
  }, 3000);
});
