import { $, setApiKey, showError } from "./common.js";

// Only a path of the console may follow the login (no open redirect).
function nextPage() {
  const next = new URLSearchParams(location.search).get("next") || "";
  return next.startsWith("/ui/") && !next.startsWith("//") ? next : "/ui/jobs";
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = $("api-key").value.trim();
  const response = await fetch("/ui/api/whoami", { headers: { Authorization: "Bearer " + key } });
  if (!response.ok) return showError("This key is not valid on this server.");
  setApiKey(key);
  location.assign(nextPage());
});
