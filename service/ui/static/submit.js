// Submit: a YAML/JSON spec editor prefilled from examples/, an optional sweep grid,
// and dataset (.npz) uploads. The browser only parses the text (js-yaml; JSON is YAML);
// the API validates the spec, and each of its errors is shown at its field path with a
// link to the line that holds that field.

import { api, ApiError, query } from "./api.js";
import { el, fmtNumber, fmtTime, replace, toast } from "./dom.js";
import { dump, load, YAMLException } from "./vendor/js-yaml.mjs";

const STARTER = "# a job spec; every field has a default\nname: my-job\ntraining: {steps: 200, eval_every: 20}\n";

/**
 * The 0-based line of the field at dotted `loc` in YAML `text`, or -1: each path
 * segment is looked up as a key at or after the previous one's line (block or flow
 * style). A guide for the eye, not a parser: the API's path is the authority.
 */
export function lineOf(text, loc) {
  const lines = text.split("\n");
  let at = -1;
  let found = false;
  for (const segment of String(loc).split(".")) {
    if (/^\d+$/.test(segment)) continue; // a list index: stay on the list's line
    const key = new RegExp(`(^|[\\s{,])["']?${segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}["']?\\s*:`);
    const next = lines.findIndex((line, i) => i >= Math.max(at, 0) && key.test(line.replace(/#.*/, "")));
    if (next < 0) return found ? at : -1;
    at = next;
    found = true;
  }
  return at;
}

/** KEY=V1,V2 per line -> {KEY: [V1, V2]}, each value read as YAML (as `aimc sweep --grid`). */
function parseGrid(text) {
  const grid = {};
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith("#")) return;
    const eq = line.indexOf("=");
    if (eq <= 0) throw new Error(`grid line ${i + 1}: write KEY=V1,V2 (e.g. pipeline.schedule=gpipe,async)`);
    grid[line.slice(0, eq).trim()] = line.slice(eq + 1).split(",").map((v) => load(v.trim()));
  });
  return grid;
}

export async function renderSubmit(main, _, signal) {
  const examples = await fetch("examples.json", { signal }).then((r) => (r.ok ? r.json() : []));
  const exampleSelect = el("select", { id: "example" },
    el("option", { value: "", text: "— choose an example —" }),
    examples.map((ex) => el("option", { value: ex.name, text: ex.name })));
  const editor = el("textarea", { id: "spec-editor", name: "spec", rows: "18", spellcheck: "false",
    autocapitalize: "off", "aria-describedby": "spec-help" });
  const first = examples.find((ex) => ex.name === "digits_analog_sgd.yaml") || examples[0];
  editor.value = first ? first.text : STARTER;
  if (first) exampleSelect.value = first.name;
  exampleSelect.addEventListener("change", () => {
    const ex = examples.find((e) => e.name === exampleSelect.value);
    if (ex) editor.value = ex.text;
  });
  // aihwkit's training configurations: picking one sets analog.config in the spec
  const configs = await api("/v1/configs", { signal }).catch(() => []);
  const configHelp = el("p", { id: "config-help", class: "muted",
    text: "An aihwkit 1.2 preset configuration sets the device, the algorithm, the IO and the update; fields the spec gives itself override it." });
  const configSelect = el("select", { id: "config", "aria-describedby": "config-help" },
    el("option", { value: "", text: "— none (the spec's own analog fields) —" }),
    configs.map((c) => el("option", { value: c.name, text: `${c.name} — ${c.summary}` })));
  configSelect.addEventListener("change", () => {
    const spec = editedSpec("Fix the spec's YAML before picking a configuration:");
    if (!spec) return;
    spec.analog = { ...(spec.analog || {}) };
    if (configSelect.value) spec.analog.config = configSelect.value;
    else delete spec.analog.config;
    editor.value = dump(spec, { flowLevel: 2 });
  });
  const sweepName = el("input", { id: "sweep-name", name: "sweep-name", type: "text", placeholder: "sweep" });
  const grid = el("textarea", { id: "sweep-grid", name: "grid", rows: "3", spellcheck: "false",
    placeholder: "pipeline.schedule=gpipe,async\nseed=0,1,2", "aria-describedby": "grid-help" });
  const errors = el("div", { id: "submit-errors", role: "alert", "aria-live": "assertive" });
  const submitButton = el("button", { type: "submit", class: "primary", id: "submit" }, "Submit");

  function goToLine(line) {
    const lines = editor.value.split("\n");
    const start = lines.slice(0, line).reduce((n, l) => n + l.length + 1, 0);
    editor.focus();
    editor.setSelectionRange(start, start + lines[line].length);
    editor.scrollTop = Math.max(0, (line - 3) * (editor.scrollHeight / lines.length));
  }

  /** The editor's text parsed (errors cleared), or null with its YAML error shown. */
  function editedSpec(heading) {
    replace(errors);
    try {
      return load(editor.value) ?? {};
    } catch (e) {
      if (!(e instanceof YAMLException)) throw e;
      showErrors(heading, [{ loc: "", msg: e.reason || e.message, line: e.mark ? e.mark.line : -1 }]);
      return null;
    }
  }

  function showErrors(heading, items) {
    replace(errors, el("div", { class: "errors card" }, el("strong", { text: heading }),
      el("ul", {}, items.map(({ loc, msg, line }) => el("li", { class: "field-error" },
        loc ? el("code", { class: "loc", text: loc }) : null, loc ? ": " : null, msg,
        line >= 0 ? el("button", { type: "button", class: "link", onclick: () => goToLine(line) }, ` (line ${line + 1})`) : null)))));
  }

  const form = el("form", { class: "card", id: "submit-form", onsubmit: async (event) => {
    event.preventDefault();
    const spec = editedSpec("The text is not valid YAML or JSON:");
    if (!spec) return;
    let gridValue = {};
    try {
      gridValue = parseGrid(grid.value);
    } catch (e) {
      showErrors("The sweep grid is not valid:", [{ loc: "grid", msg: e.message, line: -1 }]);
      return;
    }
    const isSweep = Object.keys(gridValue).length > 0;
    submitButton.disabled = true;
    try {
      if (isSweep) {
        const sweep = await api("/v1/sweeps", { method: "POST", json: { name: sweepName.value.trim() || "sweep", spec, grid: gridValue } });
        toast(`Sweep ${sweep.name} queued: ${sweep.jobs.length} jobs.`);
        location.hash = `#/sweeps/${encodeURIComponent(sweep.id)}`;
      } else {
        const job = await api("/v1/jobs", { method: "POST", json: spec });
        toast(`Job ${job.name} queued.`);
        location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
      }
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      const items = e.errors.length
        ? e.errors.map(({ loc, msg }) => ({ loc: String(loc), msg, line: lineOf(editor.value, String(loc).replace(/^grid\[[^\]]*\]\./, "")) }))
        : [{ loc: "", msg: e.message, line: -1 }];
      showErrors(`${e.title} (${e.status}):`, items);
    } finally {
      submitButton.disabled = false;
    }
  } },
  el("div", { class: "row" }, el("label", { for: "example", text: "Start from an example" }), exampleSelect),
  el("div", { class: "row" }, el("label", { for: "config", text: "aihwkit configuration" }), configSelect),
  configHelp,
  el("label", { for: "spec-editor", text: "Job spec (YAML or JSON)" }),
  el("p", { id: "spec-help", class: "muted", text: "The API checks the spec when you submit; each problem is listed with its field path. " +
    "Fields are described in the API docs (/docs, JobSpec)." }),
  editor,
  el("details", { class: "sweep-box" }, el("summary", { text: "Run as a sweep (optional)" }),
    el("label", { for: "sweep-name", text: "Sweep name" }), sweepName,
    el("label", { for: "sweep-grid", text: "Grid: one KEY=V1,V2 per line" }),
    el("p", { id: "grid-help", class: "muted", text: "Dotted spec paths; one job per combination. Vary seed to get a band over seeds." }),
    grid),
  errors,
  el("div", { class: "row" }, submitButton));

  replace(main, el("h1", { tabindex: "-1", text: "Submit" }), form, datasetsSection(signal));
}

function datasetsSection(signal) {
  const file = el("input", { type: "file", id: "dataset-file", name: "file", accept: ".npz", required: true });
  const name = el("input", { type: "text", id: "dataset-name", name: "name", placeholder: "my-dataset" });
  const result = el("div", { id: "dataset-result", role: "alert" });
  const body = el("tbody");
  const button = el("button", { type: "submit", id: "upload" }, "Upload");

  async function list() {
    const datasets = await api("/v1/datasets", { signal });
    replace(body, datasets.map((d) => el("tr", {},
      el("td", { text: d.name }),
      el("td", { class: "mono", text: d.id }),
      el("td", { class: "num", text: `${fmtNumber(d.n_train)} / ${fmtNumber(d.n_test)}` }),
      el("td", { class: "mono", text: `[${d.sample_shape.join(", ")}]` }),
      el("td", { class: "num", text: d.classes }),
      el("td", { text: fmtTime(d.created) }),
      el("td", {}, el("button", { type: "button", class: "link danger", "aria-label": `Delete dataset ${d.name}`,
        onclick: async () => {
          if (!window.confirm(`Delete dataset “${d.name}”?`)) return;
          await api(`/v1/datasets/${encodeURIComponent(d.id)}`, { method: "DELETE" });
          await list();
        } }, "Delete")))));
    if (!datasets.length) body.append(el("tr", {}, el("td", { colspan: "7", class: "empty", text: "No uploads yet." })));
  }

  const form = el("form", { class: "card", id: "dataset-form", onsubmit: async (event) => {
    event.preventDefault();
    replace(result);
    const chosen = file.files[0];
    if (!chosen) return;
    button.disabled = true;
    try {
      const d = await api(`/v1/datasets${query({ name: name.value.trim() || chosen.name.replace(/\.npz$/, "") })}`,
        { method: "POST", body: chosen, contentType: "application/octet-stream" });
      replace(result, el("p", { class: "ok" }, `Uploaded ${d.name}: ${d.n_train} training and ${d.n_test} test samples. Use it with `,
        el("code", { text: `dataset: {name: uploaded, id: ${d.id}}` })));
      await list();
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      replace(result, el("p", { class: "error" }, `Upload refused (${e.status} ${e.title}): `,
        e.errors.length ? e.errors.map((x) => x.msg).join("; ") : e.message));
    } finally {
      button.disabled = false;
    }
  } },
  el("div", { class: "row" }, el("label", { for: "dataset-file", text: ".npz file (x_train, y_train, x_test, y_test)" }), file),
  el("div", { class: "row" }, el("label", { for: "dataset-name", text: "Name" }), name),
  el("div", { class: "row" }, button),
  result);

  list().catch((e) => replace(result, el("p", { class: "error", text: e.message })));
  return el("section", { "aria-labelledby": "datasets-h" }, el("h2", { id: "datasets-h", text: "Datasets" }), form,
    el("div", { class: "table-wrap" }, el("table", { id: "datasets-table" },
      el("thead", {}, el("tr", {}, ["Name", "ID", "Train / test", "Sample shape", "Classes", "Uploaded", ""].map((h) => el("th", { scope: "col", text: h })))),
      body)));
}
