// Shared by every page: the API key (session storage), authenticated fetch, DOM helpers, polling.
const KEY = "tuneforge.apiKey";
export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

export const apiKey = () => sessionStorage.getItem(KEY);
export const setApiKey = (key) => sessionStorage.setItem(KEY, key);
export const params = () => document.getElementById("app").dataset;
export const $ = (id) => document.getElementById(id);

function toLogin() {
  sessionStorage.removeItem(KEY);
  const next = location.pathname + location.search;
  location.replace("/ui/login?next=" + encodeURIComponent(next));
}

// Every page but the login page: no key, no page. Shows the project and wires "Log out".
export async function start(main) {
  if (!apiKey()) return toLogin();
  $("logout")?.addEventListener("click", toLogin);
  try {
    const who = await api("/ui/api/whoami");
    if ($("project")) $("project").textContent = "project " + who.project;
    await main();
  } catch (error) {
    showError(error);
  }
}

// JSON from a route of this server with the bearer key; a 401 sends the user back to the login page.
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Authorization: "Bearer " + apiKey() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401) {
    toLogin();
    throw new Error("not logged in");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error || {};
    throw new Error((error.message || response.statusText) + (error.hint ? " (hint: " + error.hint + ")" : ""));
  }
  return data;
}

export function showError(error) {
  const box = $("error");
  box.textContent = String(error.message || error);
  box.hidden = false;
}

export function clearError() {
  $("error").hidden = true;
}

// el("a", {href: "/x", class: "y"}, "text", child): strings become text nodes, never HTML.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (name === "style") Object.assign(node.style, value); // CSSOM: allowed by the page's style-src 'self'

    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function fill(tbody, rows) {
  tbody.replaceChildren(...rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c)))));
}

export function button(label, onclick, { disabled = false, id } = {}) {
  return el("button", { type: "button", onclick, disabled, id, "data-action": label.toLowerCase() }, label);
}

// Run `step` now and every `ms` until it returns true; errors are shown, polling goes on.
export function poll(step, ms = 1500) {
  let timer = null;
  const tick = async () => {
    let done = false;
    try {
      done = await step();
      clearError();
    } catch (error) {
      showError(error);
    }
    if (!done) timer = setTimeout(tick, ms);
  };
  tick();
  return () => clearTimeout(timer);
}

export const when = (seconds) => (seconds ? new Date(seconds * 1000).toLocaleString() : "");
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.round(seconds);
  return s >= 3600 ? `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m` : s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`;
}
export const number = (v, digits = 4) => (typeof v === "number" ? Number(v.toPrecision(digits)).toString() : v ?? "");
export const pretty = (value) => JSON.stringify(value, null, 2);
