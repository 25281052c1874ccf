// The dashboard's entry: sign-in, sign-out and the hash router (#/jobs, #/jobs/ID,
// #/sweeps, #/sweeps/ID, #/submit). Each page gets an AbortSignal that ends its live
// streams and polls when the user navigates away.

import { api, auth, ApiError, onUnauthorized } from "./api.js";
import { el, replace, toast } from "./dom.js";
import { renderJobs } from "./jobs.js";
import { renderJob } from "./job.js";
import { renderSweep, renderSweeps } from "./sweeps.js";
import { renderSubmit } from "./submit.js";

const ROUTES = [
  [/^#\/jobs\/([^/?]+)$/, renderJob],
  [/^#\/jobs(?:\?(.*))?$/, renderJobs],
  [/^#\/sweeps\/([^/?]+)$/, renderSweep],
  [/^#\/sweeps$/, renderSweeps],
  [/^#\/submit$/, renderSubmit],
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const signOutButton = document.getElementById("signout");
let page = null; // the AbortController of the page on screen

function route() {
  page?.abort();
  page = new AbortController();
  const signedIn = Boolean(auth.key);
  nav.hidden = !signedIn;
  signOutButton.hidden = !signedIn;
  if (!signedIn) {
    renderSignIn();
    return;
  }
  const hash = location.hash || "#/jobs";
  for (const link of nav.querySelectorAll("a")) {
    const here = hash.startsWith(link.getAttribute("href"));
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const found = ROUTES.map(([pattern, render]) => [hash.match(pattern), render]).find(([m]) => m);
  if (!found) {
    replace(main, el("h1", { text: "Not found" }), el("p", {}, "No page at this address. ",
      el("a", { href: "#/jobs" }, "Go to your jobs.")));
    return;
  }
  const [match, render] = found;
  const { signal } = page; // this page's: a later navigation replaces `page`
  replace(main);
  render(main, match[1] ? decodeURIComponent(match[1]) : "", signal).catch((error) => {
    if (signal.aborted) return; // the user has moved on; this page's failure is moot
    replace(main, el("h1", { text: "Something went wrong" }), el("p", { class: "error", text: error.message }));
  });
  // move focus to the new page's heading so keyboard and screen-reader users land there
  queueMicrotask(() => main.querySelector("h1")?.focus());
}

function renderSignIn(message) {
  const input = el("input", { id: "api-key", name: "api-key", type: "password", autocomplete: "off",
    required: true, spellcheck: "false", "aria-describedby": "api-key-help" });
  const error = el("p", { class: "error", id: "signin-error", role: "alert" });
  if (message) error.textContent = message;
  const form = el("form", { class: "card signin", onsubmit: async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    try {
      await api("/v1/jobs?limit=1", { key });
      auth.set(key);
      if (!location.hash || location.hash === "#/signin") location.hash = "#/jobs";
      else route();
    } catch (e) {
      error.textContent = e instanceof ApiError && e.status === 401
        ? "That API key is not valid. Ask an administrator for one (aimc users create NAME)."
        : `Could not sign in: ${e.message}`;
      input.focus();
    }
  } },
  el("h1", { tabindex: "-1", text: "Sign in" }),
  el("label", { for: "api-key", text: "API key" }),
  input,
  el("p", { id: "api-key-help", class: "muted",
    text: "Kept in this browser's local storage and sent only in the Authorization header; Sign out removes it." }),
  el("button", { type: "submit", class: "primary" }, "Sign in"),
  error);
  replace(main, form);
  input.focus();
}

signOutButton.addEventListener("click", () => {
  auth.clear();
  page?.abort();
  toast("Signed out; the API key was removed from this browser.");
  location.hash = "#/signin";
  route();
});

onUnauthorized.add(() => {
  if (!auth.key) return;
  auth.clear();
  page?.abort();
  nav.hidden = true;
  signOutButton.hidden = true;
  renderSignIn("The API key was refused (revoked or unknown); sign in again.");
});

window.addEventListener("hashchange", route);
route();
