// The jobs list: live states, progress and accuracy (refreshed every 2 s), filters by
// state and name, and paging with the API's cursors.

import { api, every, query } from "./api.js";
import { badge, el, fmtNumber, fmtTime, progressBar, replace } from "./dom.js";

const STATES = ["queued", "running", "retrying", "lost", "succeeded", "failed", "cancelled"];
const REFRESH_MS = 2000;
const PAGE = 20;
const earlier = []; // cursors of the pages before this one (the Newer button pops)

export async function renderJobs(main, queryText, signal) {
  const params = new URLSearchParams(queryText || "");
  const limit = Math.min(100, Math.max(1, Number(params.get("limit")) || PAGE));
  const filters = { state: params.get("state") || "", name: params.get("name") || "", cursor: params.get("cursor") || "",
    limit: limit === PAGE ? "" : String(limit) };
  if (!filters.cursor) earlier.length = 0;

  const stateSelect = el("select", { id: "filter-state", name: "state" },
    el("option", { value: "", text: "any state" }),
    STATES.map((s) => el("option", { value: s, text: s, selected: s === filters.state })));
  const nameInput = el("input", { id: "filter-name", name: "name", type: "search", value: filters.name,
    placeholder: "exact job name" });
  const sizes = [...new Set([10, 20, 50, 100, limit])].sort((a, b) => a - b);
  const sizeSelect = el("select", { id: "page-size", name: "limit" },
    sizes.map((n) => el("option", { value: String(n), text: String(n), selected: n === limit })));
  const form = el("form", { class: "filters", role: "search", "aria-label": "Filter jobs", onsubmit: (event) => {
    event.preventDefault();
    earlier.length = 0;
    const size = Number(sizeSelect.value);
    location.hash = `#/jobs${query({ state: stateSelect.value, name: nameInput.value.trim(), limit: size === PAGE ? "" : size })}`;
  } },
  el("label", { for: "filter-state", text: "State" }), stateSelect,
  el("label", { for: "filter-name", text: "Name" }), nameInput,
  el("label", { for: "page-size", text: "Per page" }), sizeSelect,
  el("button", { type: "submit" }, "Filter"),
  (filters.state || filters.name) ? el("a", { href: "#/jobs", class: "clear" }, "Clear filters") : null);

  const body = el("tbody");
  const table = el("table", { class: "jobs", id: "jobs-table" },
    el("caption", { class: "visually-hidden", text: "Your jobs, newest first" }),
    el("thead", {}, el("tr", {}, ["Name", "State", "Progress", "Test accuracy", "Test loss", "Created", "ID"]
      .map((h) => el("th", { scope: "col", text: h })))),
    body);
  const status = el("p", { class: "muted", "aria-live": "polite" });
  const newer = el("button", { type: "button", disabled: !filters.cursor, onclick: () => {
    const cursor = earlier.pop() || "";
    location.hash = `#/jobs${query({ ...filters, cursor })}`;
  } }, "← Newer");
  const older = el("button", { type: "button", disabled: true }, "Older →");
  let next = null;
  older.addEventListener("click", () => {
    if (!next) return;
    earlier.push(filters.cursor);
    location.hash = `#/jobs${query({ ...filters, cursor: next })}`;
  });

  replace(main,
    el("div", { class: "page-head" }, el("h1", { tabindex: "-1", text: "Jobs" }),
      el("a", { href: "#/submit", class: "button primary" }, "Submit a job")),
    form, el("div", { class: "table-wrap" }, table), el("nav", { class: "pager", "aria-label": "Pages" }, newer, older), status);

  await every(REFRESH_MS, async () => {
    const page = await api(`/v1/jobs${query({ ...filters, limit })}`, { signal });
    next = page.next_cursor;
    older.disabled = !next;
    replace(body, page.jobs.map(row));
    if (!page.jobs.length) {
      body.append(el("tr", {}, el("td", { colspan: "7", class: "empty" },
        filters.state || filters.name ? "No jobs match these filters." : "No jobs yet. ",
        filters.state || filters.name ? null : el("a", { href: "#/submit" }, "Submit one."))));
    }
    status.textContent = `Updated ${new Date().toLocaleTimeString("en-GB")}; refreshes every ${REFRESH_MS / 1000} s.`;
  }, signal);
}

function row(job) {
  const m = job.latest_metrics || {};
  const link = el("a", { href: `#/jobs/${encodeURIComponent(job.id)}`, class: "job-name", text: job.name });
  return el("tr", { "data-job": job.id },
    el("td", {}, link),
    el("td", {}, badge(job.state)),
    el("td", {}, progressBar(job.progress, `progress of ${job.name}`)),
    el("td", { class: "num", text: m.test_accuracy == null ? "–" : fmtNumber(m.test_accuracy, 4) }),
    el("td", { class: "num", text: m.test_loss == null ? "–" : fmtNumber(m.test_loss, 4) }),
    el("td", { text: fmtTime(job.created) }),
    el("td", { class: "mono", text: job.id.slice(0, 8) }));
}
