import { $, api, el, fill, start } from "./common.js";

start(async () => {
  const { data } = await api("/api/v1/registry/models");
  fill($("models").querySelector("tbody"), data.map((m) => [
    el("a", { href: `/ui/models/${encodeURIComponent(m.name)}` }, m.name), m.latest_version, m.versions, m.stored,
    Object.entries(m.aliases).map(([a, v]) => `${a} → ${v}`).join(", ")]));
  $("empty").hidden = data.length > 0;
});
