// Sweeps: the list, and one sweep's table of jobs (overrides, state, final metrics),
// overlaid curves (one line per combination; a mean line and min-max band per
// combination when the grid varies `seed`) and a CSV download of the table.

import { api, every, query } from "./api.js";
import { lineChart } from "./charts.js";
import { badge, el, fmtNumber, fmtTime, replace, saveBlob } from "./dom.js";

const FINAL = ["test_accuracy", "test_loss", "train_loss", "samples", "sim_time_ns", "wall_s"];
const METRICS = { test_loss: "test loss", train_loss: "train loss", test_accuracy: "test accuracy" };
const X_AXES = {
  samples: { label: "samples", of: (m) => m.samples },
  sim: { label: "simulated time (ms)", of: (m) => m.sim_time_ns / 1e6 },
};
const REFRESH_MS = 3000;

/** `key=value` pairs as the API's sweep labels write them (last path segment). */
function label(overrides) {
  return Object.entries(overrides).map(([k, v]) => `${k.split(".").pop()}=${v}`).join(", ");
}

export async function renderSweeps(main, _, signal) {
  const body = el("tbody");
  replace(main, el("div", { class: "page-head" }, el("h1", { tabindex: "-1", text: "Sweeps" }),
    el("a", { href: "#/submit", class: "button primary" }, "Start a sweep")),
  el("div", { class: "table-wrap" }, el("table", { id: "sweeps-table" },
    el("thead", {}, el("tr", {}, ["Name", "Grid", "Jobs", "States", "Created"].map((h) => el("th", { scope: "col", text: h })))),
    body)));
  await every(REFRESH_MS, async () => {
    const sweeps = await api("/v1/sweeps", { signal });
    replace(body, sweeps.map((s) => el("tr", {},
      el("td", {}, el("a", { href: `#/sweeps/${encodeURIComponent(s.id)}`, text: s.name })),
      el("td", { class: "mono", text: Object.entries(s.grid).map(([k, v]) => `${k}=${v.join(",")}`).join("  ") }),
      el("td", { class: "num", text: s.jobs.length }),
      el("td", {}, Object.entries(s.states).map(([state, n]) => el("span", { class: "state-count" }, badge(state), ` ${n}`))),
      el("td", { text: fmtTime(s.created) }))));
    if (!sweeps.length) {
      body.append(el("tr", {}, el("td", { colspan: "5", class: "empty" }, "No sweeps yet. ",
        el("a", { href: "#/submit" }, "Start one from the submit page."))));
    }
  }, signal);
}

export async function renderSweep(main, sweepId, signal) {
  const path = `/v1/sweeps/${encodeURIComponent(sweepId)}`;
  const title = el("h1", { tabindex: "-1", text: "Sweep" });
  replace(main, el("p", {}, el("a", { href: "#/sweeps" }, "← All sweeps")), title);
  let sweep = await api(path, { signal });
  const metrics = new Map(); // job id -> metric records
  const view = { metric: "test_loss", x: "samples", logY: true };
  const keys = Object.keys(sweep.grid);

  const tableBody = el("tbody");
  const table = el("table", { id: "sweep-table" },
    el("thead", {}, el("tr", {}, ["Job", ...keys, "State", ...FINAL].map((h) => el("th", { scope: "col", text: h })))),
    tableBody);
  const chartBox = el("div", { class: "charts single", id: "sweep-chart" });
  const summary = el("p", { class: "muted", "aria-live": "polite" });
  const metricSelect = el("select", { id: "sweep-metric", onchange: (e) => { view.metric = e.target.value; draw(); } },
    Object.entries(METRICS).map(([k, v]) => el("option", { value: k, text: v, selected: k === view.metric })));
  const xSelect = el("select", { id: "sweep-x", onchange: (e) => { view.x = e.target.value; draw(); } },
    Object.entries(X_AXES).map(([k, v]) => el("option", { value: k, text: v.label })));
  const logY = el("input", { type: "checkbox", id: "sweep-log-y", checked: true,
    onchange: (e) => { view.logY = e.target.checked; draw(); } });

  replace(main,
    el("p", {}, el("a", { href: "#/sweeps" }, "← All sweeps")),
    el("div", { class: "page-head" }, title, el("span", { class: "spacer" }),
      el("button", { type: "button", id: "sweep-csv", onclick: () => downloadCsv(sweep, keys) }, "Download CSV")),
    summary,
    el("div", { class: "table-wrap" }, table),
    el("section", { "aria-labelledby": "overlay-h" }, el("h2", { id: "overlay-h", text: "Curves" }),
      el("div", { class: "toolbar" },
        el("label", { for: "sweep-metric", text: "Metric" }), metricSelect,
        el("label", { for: "sweep-x", text: "x axis" }), xSelect,
        el("label", {}, logY, " log y")),
      chartBox));

  function show() {
    title.textContent = sweep.name;
    document.title = `${sweep.name} · aimc`;
    const states = Object.entries(sweep.states).map(([s, n]) => `${n} ${s}`).join(", ");
    summary.textContent = `${sweep.jobs.length} jobs: ${states}.${sweep.done ? " All ended." : " Updating live."}`;
    replace(tableBody, sweep.jobs.map((job) => el("tr", {},
      el("td", {}, job.state === "expired" ? el("span", { class: "mono", text: job.id.slice(0, 8) })
        : el("a", { href: `#/jobs/${encodeURIComponent(job.id)}`, class: "mono", text: job.id.slice(0, 8) })),
      keys.map((k) => el("td", { class: "mono", text: JSON.stringify(job.overrides[k]) })),
      el("td", {}, badge(job.state)),
      FINAL.map((k) => el("td", { class: "num", text: fmtNumber(job.final[k]) })))));
  }

  function draw() {
    const axis = X_AXES[view.x];
    const seeded = keys.includes("seed") && sweep.grid.seed.length > 1;
    const groups = new Map(); // label without seed -> [records of each seed]
    for (const job of sweep.jobs) {
      const others = Object.fromEntries(Object.entries(job.overrides).filter(([k]) => !(seeded && k === "seed")));
      const key = label(others) || "base";
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push((metrics.get(job.id) || []).filter((m) => m[view.metric] != null));
    }
    const series = [...groups.entries()].map(([name, runs]) => seeded ? band(name, runs, axis, view.metric)
      : { label: name, points: runs[0].map((m) => [axis.of(m), m[view.metric]]) });
    const accuracy = view.metric === "test_accuracy";
    chartBox.dataset.series = String(series.length);
    replace(chartBox, lineChart({ id: "chart-sweep", title: `${METRICS[view.metric]}${seeded ? " (mean and min–max over seeds)" : ""}`,
      xLabel: axis.label, yLabel: METRICS[view.metric], logY: view.logY && !accuracy,
      yDomain: accuracy ? [0, 1] : undefined, series }));
  }

  const complete = new Set(); // jobs whose every point is here (fetched after they ended)
  async function refresh() {
    sweep = await api(path, { signal });
    show();
    const ended = ["succeeded", "failed", "cancelled", "expired"];
    await Promise.all(sweep.jobs.filter((j) => j.state !== "expired" && !complete.has(j.id)).map(async (job) => {
      const have = metrics.get(job.id) || [];
      const since = have.length ? have[have.length - 1].step : -1;
      const fresh = await api(`/v1/jobs/${encodeURIComponent(job.id)}/metrics${query({ since })}`, { signal });
      metrics.set(job.id, [...have, ...fresh]);
      if (ended.includes(job.state)) complete.add(job.id);
    }));
    draw();
  }

  await refresh();
  if (!sweep.done) {
    await every(REFRESH_MS, async () => {
      if (sweep.done) return;
      await refresh();
    }, signal);
  }
}

/** Mean line and min-max band over the seeds' runs, point by point (runs share eval steps). */
function band(name, runs, axis, metric) {
  const n = Math.min(...runs.map((r) => r.length));
  const points = [];
  const spread = [];
  for (let i = 0; i < n; i++) {
    const ys = runs.map((r) => r[i][metric]);
    const x = axis.of(runs[0][i]);
    points.push([x, ys.reduce((a, b) => a + b, 0) / ys.length]);
    spread.push([x, Math.min(...ys), Math.max(...ys)]);
  }
  return { label: `${name} (${runs.length} seeds)`, points, band: spread };
}

function csvCell(value) {
  const text = value === undefined || value === null ? "" : typeof value === "string" ? value : JSON.stringify(value);
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** The table as CSV: job id, each override, state, the final metrics. */
function downloadCsv(sweep, keys) {
  const header = ["job_id", ...keys, "state", ...FINAL];
  const rows = sweep.jobs.map((job) => [job.id, ...keys.map((k) => job.overrides[k]), job.state, ...FINAL.map((k) => job.final[k])]);
  const text = [header, ...rows].map((r) => r.map(csvCell).join(",")).join("\n") + "\n";
  saveBlob(new Blob([text], { type: "text/csv" }), `sweep-${sweep.id}.csv`);
}
