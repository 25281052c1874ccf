// One job: live curves over SSE, progress and ETA, health metrics, the interactive
// pipeline Gantt, the spec, a failed job's error, artifact downloads, cancel, delete.

import { api, every, followEvents } from "./api.js";
import { gantt, lineChart, stackedBars } from "./charts.js";
import { badge, el, fmtDuration, fmtNumber, fmtTime, progressBar, replace, saveBlob, toast } from "./dom.js";
import { dump } from "./vendor/js-yaml.mjs";

const TERMINAL = ["succeeded", "failed", "cancelled"];
const REFRESH_MS = 2000; // progress and ETA (not in the event stream)
const X_AXES = {
  samples: { label: "samples", of: (m) => m.samples },
  sim: { label: "simulated time (ms)", of: (m) => m.sim_time_ns / 1e6 },
};

export async function renderJob(main, jobId, signal) {
  const path = `/v1/jobs/${encodeURIComponent(jobId)}`;
  const title = el("h1", { tabindex: "-1", class: "job-title", text: "Job" });
  replace(main, el("p", {}, el("a", { href: "#/jobs" }, "← All jobs")), title);
  let job = await api(path, { signal });
  const points = new Map(); // step -> metric record (SSE replays are dropped by step)
  const view = { x: "samples", logX: false, logY: true };

  const stateBox = el("span", { id: "job-state" });
  const progressBox = el("div", { class: "progress-line" });
  const facts = el("dl", { class: "facts" });
  const errorBox = el("section", { id: "job-error", hidden: true, "aria-labelledby": "error-h" });
  const cancelButton = el("button", { type: "button", id: "cancel", onclick: cancel }, "Cancel job");
  const deleteButton = el("button", { type: "button", id: "delete", class: "danger", onclick: remove }, "Delete job");
  const tiles = el("div", { class: "tiles", id: "health-tiles" });
  const curves = el("div", { class: "charts", id: "curves" });
  const health = el("div", { class: "charts", id: "health" });
  const energyBox = el("div", { class: "charts", id: "energy" });
  const energyFacts = el("p", { id: "energy-facts", class: "muted", text: "The split by stage is shown when the job has finished." });
  const timeline = el("div", { id: "timeline" }, el("p", { class: "muted", text: "Shown when the job has finished." }));
  const artifacts = el("ul", { class: "artifacts", id: "artifacts" }, el("li", { class: "muted", text: "Listed when the job has finished." }));
  const specBox = el("pre", { class: "spec", id: "spec", tabindex: "0" });

  const xChoice = el("fieldset", { class: "inline" }, el("legend", { text: "x axis" }),
    Object.entries(X_AXES).map(([key, axis]) => el("label", {},
      el("input", { type: "radio", name: "x-axis", value: key, checked: key === view.x,
        onchange: () => { view.x = key; draw(); } }), ` ${axis.label}`)));
  const logX = el("label", {}, el("input", { type: "checkbox", id: "log-x",
    onchange: (e) => { view.logX = e.target.checked; draw(); } }), " log x");
  const logY = el("label", {}, el("input", { type: "checkbox", id: "log-y", checked: true,
    onchange: (e) => { view.logY = e.target.checked; draw(); } }), " log loss and gradient axes");

  replace(main,
    el("p", {}, el("a", { href: "#/jobs" }, "← All jobs")),
    el("div", { class: "page-head" }, title, stateBox, el("span", { class: "spacer" }), cancelButton, deleteButton),
    el("section", { class: "card", "aria-label": "Status" }, progressBox, facts),
    errorBox,
    el("section", { "aria-labelledby": "curves-h" }, el("h2", { id: "curves-h", text: "Training curves" }),
      el("div", { class: "toolbar" }, xChoice, logX, logY), curves),
    el("section", { "aria-labelledby": "health-h" }, el("h2", { id: "health-h", text: "Health" }),
      el("p", { class: "muted", text: "Saturation S: the theory's max (G/√F)² over each tile, averaged over " +
        "tiles (analog-model.md §3). Near-bound fraction: weights within 5 % of the range from a bound. " +
        "Gradient norm²: the convergence measure ‖∇f(W)‖². Analog metrics are empty for a digital model." }),
      tiles, health),
    el("section", { "aria-labelledby": "energy-h" }, el("h2", { id: "energy-h", text: "Energy" }),
      el("p", { class: "muted", text: "An estimate from per-operation figures of the job's hardware profile (docs/energy.md): " +
        "what its analog hardware would spend, against the same job on a GPU." }), energyFacts, energyBox),
    el("section", { "aria-labelledby": "timeline-h" }, el("h2", { id: "timeline-h", text: "Pipeline timeline" }), timeline),
    el("section", { "aria-labelledby": "artifacts-h" }, el("h2", { id: "artifacts-h", text: "Artifacts" }), artifacts),
    el("section", { "aria-labelledby": "spec-h" }, el("h2", { id: "spec-h", text: "Spec" }), specBox));

  function show() {
    title.textContent = job.name;
    document.title = `${job.name} · aimc`;
    replace(stateBox, badge(job.state));
    const eta = job.eta_seconds != null ? ` · about ${fmtDuration(job.eta_seconds)} left` : "";
    replace(progressBox, progressBar(job.progress, "progress"), el("span", { id: "eta", text: eta }));
    const spec = job.spec;
    const rows = [
      ["ID", job.id],
      ["Model", `${spec.model?.kind ?? "?"} on ${spec.dataset?.name ?? "?"}`],
      ["Device", spec.analog?.enabled === false ? "digital" : (spec.analog?.device?.preset || spec.analog?.device?.model || "analog")],
      ["Algorithm", spec.optimizer?.algorithm],
      ["Pipeline", `${spec.pipeline?.schedule}, ${spec.pipeline?.stages} stage${spec.pipeline?.stages === 1 ? "" : "s"}`],
      ["Attempts", job.attempts],
      ["Created", fmtTime(job.created)],
      ["Started", fmtTime(job.started)],
      ["Finished", fmtTime(job.finished)],
    ];
    replace(facts, rows.map(([k, v]) => el("div", {}, el("dt", { text: k }), el("dd", { text: v ?? "–" }))));
    cancelButton.hidden = TERMINAL.includes(job.state);
    deleteButton.hidden = !TERMINAL.includes(job.state);
    errorBox.hidden = !job.error;
    if (job.error) {
      replace(errorBox, el("h2", { id: "error-h", text: "Error" }), el("pre", { class: "error", text: job.error }));
    }
    if (!specBox.textContent) specBox.textContent = dump(job.spec, { lineWidth: 100 }); // once: keep a selection
  }

  let pending = false;
  function draw() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      const sorted = [...points.values()].sort((a, b) => a.step - b.step);
      drawCharts(curves, health, tiles, sorted, view);
      drawEnergy(energyBox, sorted);
    });
  }

  async function cancel() {
    cancelButton.disabled = true;
    try {
      job = await api(`${path}/cancel`, { method: "POST" });
      show();
      toast("Cancel requested; a running job stops at its next check.");
    } catch (error) {
      toast(`Cancel failed: ${error.message}`, "error");
    } finally {
      cancelButton.disabled = false;
    }
  }

  async function remove() {
    if (!window.confirm(`Delete job “${job.name}” and all its data?`)) return;
    try {
      await api(path, { method: "DELETE" });
      toast("Job deleted.");
      location.hash = "#/jobs";
    } catch (error) {
      toast(`Delete failed: ${error.message}`, "error");
    }
  }

  let finishedShown = false;
  async function finished() {
    if (finishedShown) return;
    finishedShown = true;
    const names = await api(`${path}/artifacts`, { signal });
    replace(artifacts, names.length ? names.map((name) => el("li", {},
      el("button", { type: "button", class: "link", "data-artifact": name, onclick: () => download(name) }, `Download ${name}`)))
      : el("li", { class: "muted", text: "No artifacts (the job ended before training finished)." }));
    const result = job.state === "succeeded" ? await api(`${path}/result`, { signal }).catch(() => null) : null;
    if (result?.energy) showEnergy(result.energy);
    const data = names.includes("timeline.json") ? await api(`${path}/artifacts/timeline.json`, { signal }) : null;
    if (data && data.actions.length) {
      replace(timeline, gantt(data));
    } else {
      replace(timeline, el("p", { class: "muted", text: "No timeline: no pipeline action ran before the job ended." }));
    }
  }

  function showEnergy(energy) {
    const kinds = Object.keys(energy.by_kind_pj);
    const rows = energy.by_stage_pj.map((parts, s) => ({ label: `stage ${s}`, parts }));
    const ratio = energy.digital_over_analog != null ? `; the same job on a GPU: ${fmtNumber(energy.digital_over_analog, 3)}× as much` : "";
    const missing = energy.not_counted.length ? `; not counted (no figure): ${energy.not_counted.join(", ")}` : "";
    energyFacts.textContent = `${fmtEnergy(energy.total_pj)} in all, ${fmtEnergy(energy.per_sample_pj || 0)} per sample${ratio}${missing}.`;
    energyBox.querySelector("#chart-energy-stages")?.remove();
    energyBox.append(stackedBars({ id: "chart-energy-stages", title: "Energy by stage and kind", rows, kinds,
      fmt: fmtEnergy, xLabel: "energy" }));
  }

  async function download(name) {
    try {
      const response = await api(`${path}/artifacts/${encodeURIComponent(name)}`, { raw: true });
      saveBlob(await response.blob(), name);
    } catch (error) {
      toast(`Download failed: ${error.message}`, "error");
    }
  }

  show();
  for (const m of await api(`${path}/metrics`, { signal })) points.set(m.step, m);
  draw();
  if (TERMINAL.includes(job.state)) {
    await finished();
    return;
  }
  const done = () => TERMINAL.includes(job.state);
  const poll = every(REFRESH_MS, async () => {
    job = await api(path, { signal });
    show();
    if (done()) await finished();
  }, signal);
  let lastStateTime = 0;
  const stream = followEvents(`${path}/events`, (event) => {
    if (event.type === "metric") {
      const m = JSON.parse(event.data);
      if (!points.has(m.step)) {
        points.set(m.step, m);
        draw();
      }
    } else if (event.type === "state") {
      // a server that cannot resume replays old states after a reconnect: keep the newest
      const { state, t } = JSON.parse(event.data);
      if (t >= lastStateTime) {
        lastStateTime = t;
        if (state !== job.state) {
          job = { ...job, state };
          show();
        }
      }
    }
  }, { signal, isDone: done });
  await stream;
  if (!signal.aborted) {
    job = await api(path, { signal });
    show();
    if (done()) await finished();
  }
  await poll.catch(() => {});
}

/** Curves, health charts and the latest-values tiles, from the metric points so far. */
function drawCharts(curves, health, tiles, metrics, view) {
  const axis = X_AXES[view.x];
  const series = (label, key) => ({ label, points: metrics.filter((m) => m[key] != null).map((m) => [axis.of(m), m[key]]) });
  const common = { xLabel: axis.label, logX: view.logX, empty: metrics.length ? undefined : "No metric points yet." };
  curves.dataset.points = String(metrics.length);
  replace(curves,
    lineChart({ ...common, id: "chart-loss", title: "Loss", yLabel: "loss", logY: view.logY,
      series: [series("train loss", "train_loss"), series("test loss", "test_loss")] }),
    lineChart({ ...common, id: "chart-accuracy", title: "Test accuracy", yLabel: "accuracy", yDomain: [0, 1],
      series: [{ ...series("test accuracy", "test_accuracy"), color: "#2ca02c" }] }));
  replace(health,
    lineChart({ ...common, id: "chart-saturation", title: "Saturation S", yLabel: "S", empty: common.empty || "None: a digital model has no analog tiles.",
      series: [{ ...series("saturation", "saturation"), color: "#d62728" }] }),
    lineChart({ ...common, id: "chart-near-bound", title: "Near-bound fraction", yLabel: "fraction", yDomain: [0, 1], empty: common.empty || "None: a digital model has no analog tiles.",
      series: [{ ...series("near-bound fraction", "near_bound_fraction"), color: "#ff7f0e" }] }),
    lineChart({ ...common, id: "chart-grad", title: "Gradient norm²", yLabel: "‖g‖²", logY: view.logY,
      series: [{ ...series("gradient norm²", "grad_norm_sq"), color: "#9467bd" }] }));
  const last = metrics[metrics.length - 1] || {};
  const tile = (label, value) => el("div", { class: "tile" }, el("span", { class: "tile-label", text: label }),
    el("span", { class: "tile-value", text: value }));
  replace(tiles,
    tile("step", fmtNumber(last.step)),
    tile("samples", fmtNumber(last.samples)),
    tile("simulated time", last.sim_time_ns == null ? "–" : `${fmtNumber(last.sim_time_ns / 1e6)} ms`),
    tile("test accuracy", fmtNumber(last.test_accuracy)),
    tile("saturation", fmtNumber(last.saturation)),
    tile("near-bound fraction", fmtNumber(last.near_bound_fraction)),
    tile("gradient norm²", fmtNumber(last.grad_norm_sq)));
}

/** pJ in the unit that reads best (as aimc_spec.energy.format_energy). */
function fmtEnergy(pj) {
  for (const [unit, scale] of [["J", 1e12], ["mJ", 1e9], ["µJ", 1e6], ["nJ", 1e3]]) {
    if (Math.abs(pj) >= scale) return `${fmtNumber(pj / scale, 3)} ${unit}`;
  }
  return `${fmtNumber(pj, 3)} pJ`;
}

/** Test accuracy against the energy spent so far, from the metric points. */
function drawEnergy(box, metrics) {
  const points = metrics.filter((m) => m.energy_pj != null && m.test_accuracy != null)
    .map((m) => [m.energy_pj / 1e6, m.test_accuracy]);
  box.querySelector("#chart-energy-accuracy")?.remove();
  box.prepend(lineChart({ id: "chart-energy-accuracy", title: "Test accuracy against energy", xLabel: "energy so far (µJ)",
    yLabel: "accuracy", yDomain: [0, 1], empty: "No metric points yet.",
    series: [{ label: "test accuracy", points, color: "#2ca02c" }] }));
}
