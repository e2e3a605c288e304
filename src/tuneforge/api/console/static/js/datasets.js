import { $, api, el, fill, start, when } from "./common.js";

start(async () => {
  const { data } = await api("/api/v1/data");
  fill($("datasets").querySelector("tbody"), data.map((d) => [
    el("a", { href: `/ui/data/${encodeURIComponent(d.name)}` }, d.name), when(d.created_at)]));
  $("empty").hidden = data.length > 0;
});
