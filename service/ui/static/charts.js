// Small SVG charts drawn here rather than by a vendored library: line charts with
// linear or log axes and a hover read-out, and the pipeline Gantt chart with zoom and
// pan. A few hundred points per chart, so each update simply redraws.

import { el, svg, fmtNumber } from "./dom.js";

export const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
  "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
const W = 560;
const H = 280;
const M = { left: 62, right: 24, top: 12, bottom: 40 };

/** Ticks of a linear axis: 1, 2 or 5 times a power of ten, about `count` of them. */
function linearTicks(lo, hi, count = 5) {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => span / s <= count + 1);
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
    ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  }
  return ticks;
}

/** Ticks of a log axis: every decade, with 2 and 5 inside when few decades show, and
 * linear steps when the range is under a decade (a loss between 1.6 and 2.3). */
function logTicks(lo, hi) {
  if (hi / lo < 10) return linearTicks(lo, hi, 5).filter((t) => t > 0);
  const ticks = [];
  const few = Math.log10(hi / lo) <= 2.5;
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of few ? [1, 2, 5] : [1]) {
      const t = m * 10 ** e;
      if (t >= lo * (1 - 1e-9) && t <= hi * (1 + 1e-9)) ticks.push(t);
    }
  }
  return ticks;
}

/** A scale: data -> pixels over [a, b], with its ticks. */
function scale(values, { log, a, b, domain }) {
  let lo;
  let hi;
  if (domain) {
    [lo, hi] = domain;
  } else {
    const finite = values.filter((v) => Number.isFinite(v) && (!log || v > 0));
    lo = finite.length ? Math.min(...finite) : log ? 1 : 0;
    hi = finite.length ? Math.max(...finite) : log ? 10 : 1;
  }
  if (log) {
    if (hi <= lo) { lo /= 2; hi *= 2; }
    lo = 10 ** (Math.floor(Math.log10(lo) * 10) / 10); // to a tenth of a decade: a little air
    hi = 10 ** (Math.ceil(Math.log10(hi) * 10) / 10);
    const f = (v) => a + ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (b - a);
    return { f, lo, hi, ticks: logTicks(lo, hi), ok: (v) => Number.isFinite(v) && v > 0 };
  }
  if (hi === lo) { // one point (or a flat line): a range around it, from 0 if it is 0
    const pad = Math.abs(lo) * 0.1 || 1;
    hi += pad;
    if (lo !== 0) lo -= pad;
  }
  const f = (v) => a + ((v - lo) / (hi - lo)) * (b - a);
  return { f, lo, hi, ticks: linearTicks(lo, hi), ok: Number.isFinite };
}

/**
 * A line chart. series: [{label, points: [[x, y], ...], band?: [[x, lo, hi], ...],
 * color?}]. Points that a log axis cannot show (<= 0) are left out and counted in the
 * caption. Returns a <figure>.
 */
export function lineChart({ title, xLabel, yLabel, series, logX = false, logY = false, yDomain, id, empty }) {
  if (!series.some((s) => s.points.length)) {
    return el("figure", { class: "chart empty", id }, el("figcaption", {}, el("strong", { text: title })),
      el("p", { class: "muted", text: empty || "No values yet." }));
  }
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => [...s.points.map((p) => p[1]),
    ...(s.band || []).flatMap((p) => [p[1], p[2]])]);
  const sx = scale(xs, { log: logX, a: M.left, b: W - M.right });
  const sy = scale(ys, { log: logY, a: H - M.bottom, b: M.top, domain: yDomain });
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img",
    "aria-label": `${title}: ${yLabel} against ${xLabel}` });
  const grid = svg("g", { class: "grid" });
  for (const t of sx.ticks) {
    const x = sx.f(t);
    grid.append(svg("line", { x1: x, x2: x, y1: M.top, y2: H - M.bottom }),
      svg("text", { x, y: H - M.bottom + 16, "text-anchor": "middle", class: "tick", text: fmtNumber(t, 3) }));
  }
  for (const t of sy.ticks) {
    const y = sy.f(t);
    grid.append(svg("line", { x1: M.left, x2: W - M.right, y1: y, y2: y }),
      svg("text", { x: M.left - 6, y: y + 4, "text-anchor": "end", class: "tick", text: fmtNumber(t, 3) }));
  }
  grid.append(
    svg("text", { x: (M.left + W - M.right) / 2, y: H - 6, "text-anchor": "middle", class: "axis-label",
      text: xLabel + (logX ? " (log)" : "") }),
    svg("text", { x: 14, y: (M.top + H - M.bottom) / 2, "text-anchor": "middle", class: "axis-label",
      transform: `rotate(-90 14 ${(M.top + H - M.bottom) / 2})`, text: yLabel + (logY ? " (log)" : "") }),
  );
  root.append(grid, svg("rect", { x: M.left, y: M.top, width: W - M.left - M.right,
    height: H - M.top - M.bottom, class: "frame" }));
  let hidden = 0;
  const drawn = series.map((s, i) => {
    const color = s.color || PALETTE[i % PALETTE.length];
    if (s.band && s.band.length) {
      const band = s.band.filter((p) => sx.ok(p[0]) && sy.ok(p[1]) && sy.ok(p[2]));
      const upper = band.map((p) => `${sx.f(p[0])},${sy.f(p[2])}`);
      const lower = band.map((p) => `${sx.f(p[0])},${sy.f(p[1])}`).reverse();
      root.append(svg("polygon", { points: [...upper, ...lower].join(" "), fill: color, class: "band" }));
    }
    const pts = s.points.filter((p) => sx.ok(p[0]) && sy.ok(p[1]));
    hidden += s.points.length - pts.length;
    const path = pts.map((p, k) => `${k ? "L" : "M"}${sx.f(p[0]).toFixed(1)},${sy.f(p[1]).toFixed(1)}`).join("");
    root.append(svg("path", { d: path, stroke: color, class: "line" }));
    if (pts.length <= 40) {
      for (const p of pts) root.append(svg("circle", { cx: sx.f(p[0]), cy: sy.f(p[1]), r: 2.2, fill: color }));
    }
    return { ...s, color, pts };
  });
  root.append(hover(drawn, sx, sy));
  const legend = el("ul", { class: "legend" }, drawn.map((s) => {
    const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.background = s.color;
    return el("li", {}, swatch, s.label);
  }));
  const note = hidden ? el("span", { class: "muted", text: ` ${hidden} point(s) at or below 0 not shown on the log axis` }) : null;
  return el("figure", { class: "chart", id },
    el("figcaption", {}, el("strong", { text: title }), note), root, legend);
}

/** The read-out under the pointer: a vertical rule and each series' nearest point. */
function hover(series, sx, sy) {
  const g = svg("g", { class: "hover" });
  const rule = svg("line", { y1: M.top, y2: H - M.bottom, class: "rule", visibility: "hidden" });
  const box = svg("g", { visibility: "hidden" });
  const area = svg("rect", { x: M.left, y: M.top, width: W - M.left - M.right,
    height: H - M.top - M.bottom, class: "hover-area" });
  area.addEventListener("pointerleave", () => {
    rule.setAttribute("visibility", "hidden");
    box.setAttribute("visibility", "hidden");
  });
  area.addEventListener("pointermove", (event) => {
    const ctm = area.getScreenCTM();
    if (!ctm) return;
    const px = (event.clientX - ctm.e) / ctm.a;
    const lines = [];
    let at = null;
    for (const s of series) {
      let best = null;
      for (const p of s.pts) if (!best || Math.abs(sx.f(p[0]) - px) < Math.abs(sx.f(best[0]) - px)) best = p;
      if (!best) continue;
      at ??= best[0];
      lines.push([s.color, `${s.label}: ${fmtNumber(best[1])}`]);
    }
    if (at === null) return;
    const x = sx.f(at);
    rule.setAttribute("x1", x);
    rule.setAttribute("x2", x);
    rule.setAttribute("visibility", "visible");
    box.replaceChildren();
    const left = x > (M.left + W) / 2;
    const tx = left ? x - 8 : x + 8;
    const anchor = left ? "end" : "start";
    box.append(svg("text", { x: tx, y: M.top + 14, "text-anchor": anchor, class: "hover-text", text: `x = ${fmtNumber(at)}` }));
    lines.forEach(([color, text], k) => box.append(svg("text", { x: tx, y: M.top + 30 + 15 * k,
      "text-anchor": anchor, fill: color, class: "hover-text", text })));
    box.setAttribute("visibility", "visible");
  });
  g.append(rule, box, area);
  return g;
}

export const KINDS = {
  F: { name: "forward", color: "#1f77b4" },
  B: { name: "backward", color: "#ff7f0e" },
  U: { name: "update", color: "#2ca02c" },
};
const GH_ROW = 34;

/**
 * The pipeline Gantt chart: stages x simulated time, one bar per action coloured by
 * kind (F/B/U), labelled with its micro-batch when wide enough. Zoom with the buttons,
 * the mouse wheel or +/-; pan by dragging or with the arrow keys; 0 resets.
 * data: {schedule, stages, actions: [[stage, kind, microbatch, start_ns, end_ns], ...]}.
 */
export function gantt(data) {
  const actions = data.actions;
  const end = Math.max(...actions.map((a) => a[4]), 1);
  const unit = end >= 2e6 ? { div: 1e6, name: "ms" } : { div: 1e3, name: "µs" };
  const height = M.top + data.stages * GH_ROW + 50;
  const width = 900;
  const left = 70;
  let view = [0, end];
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "gantt-svg", tabindex: "0",
    role: "img", "aria-label": `Pipeline timeline, ${data.stages} stages, ${actions.length} actions. ` +
      "Plus and minus zoom, arrow keys pan, 0 resets." });
  const readout = el("span", { class: "muted", "aria-live": "polite" });
  const x = (t) => left + ((t - view[0]) / (view[1] - view[0])) * (width - left - 10);

  function draw() {
    root.replaceChildren();
    const span = view[1] - view[0];
    for (const t of linearTicks(view[0] / unit.div, view[1] / unit.div, 8)) {
      const px = x(t * unit.div);
      root.append(svg("line", { x1: px, x2: px, y1: M.top, y2: height - 40, class: "grid-line" }),
        svg("text", { x: px, y: height - 24, "text-anchor": "middle", class: "tick", text: fmtNumber(t, 4) }));
    }
    root.append(svg("text", { x: (left + width) / 2, y: height - 4, "text-anchor": "middle", class: "axis-label",
      text: `simulated time (${unit.name})` }));
    for (let s = 0; s < data.stages; s++) {
      root.append(svg("text", { x: 6, y: M.top + s * GH_ROW + GH_ROW / 2 + 4, class: "tick", text: `stage ${s}` }));
    }
    const clip = svg("svg", { x: left, y: 0, width: width - left - 10, height, overflow: "hidden" });
    for (const [stage, kind, j, t0, t1] of actions) {
      if (t1 < view[0] || t0 > view[1]) continue;
      const x0 = x(t0) - left;
      const w = Math.max(x(t1) - x(t0), 2);
      const y = M.top + stage * GH_ROW + 4;
      const bar = svg("rect", { x: x0, y, width: w, height: GH_ROW - 8, fill: KINDS[kind].color,
        class: `bar kind-${kind}` });
      bar.append(svg("title", { text: `${stage}${kind}${j}: stage ${stage}, ${KINDS[kind].name}, ` +
        `micro-batch ${j}, ${fmtNumber(t0 / unit.div)}–${fmtNumber(t1 / unit.div)} ${unit.name}` }));
      clip.append(bar);
      if (w >= 16) {
        clip.append(svg("text", { x: x0 + w / 2, y: y + (GH_ROW - 8) / 2 + 4, "text-anchor": "middle",
          class: "bar-label", text: String(j) }));
      }
    }
    root.append(clip);
    readout.textContent = `showing ${fmtNumber(view[0] / unit.div)}–${fmtNumber(view[1] / unit.div)} ` +
      `${unit.name} of ${fmtNumber(end / unit.div)} ${unit.name} (zoom ×${fmtNumber(end / span, 3)})`;
  }

  function zoom(factor, centre = (view[0] + view[1]) / 2) {
    const span = Math.min(end, Math.max(end / 2000, (view[1] - view[0]) * factor));
    let a = centre - (centre - view[0]) * (span / (view[1] - view[0]));
    a = Math.min(Math.max(0, a), end - span);
    view = [a, a + span];
    draw();
  }
  function pan(fraction) {
    const span = view[1] - view[0];
    const a = Math.min(Math.max(0, view[0] + fraction * span), end - span);
    view = [a, a + span];
    draw();
  }
  function timeAt(event) {
    const ctm = root.getScreenCTM();
    const px = ctm ? (event.clientX - ctm.e) / ctm.a : width / 2;
    return view[0] + ((px - left) / (width - left - 10)) * (view[1] - view[0]);
  }
  root.addEventListener("wheel", (event) => {
    event.preventDefault();
    zoom(event.deltaY < 0 ? 0.8 : 1.25, timeAt(event));
  }, { passive: false });
  let drag = null;
  root.addEventListener("pointerdown", (event) => {
    drag = { t: timeAt(event), view: [...view] };
    root.setPointerCapture(event.pointerId);
  });
  root.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const ctm = root.getScreenCTM();
    const dx = ctm ? event.movementX / ctm.a : 0;
    pan(-dx / (width - left - 10));
  });
  root.addEventListener("pointerup", () => { drag = null; });
  root.addEventListener("keydown", (event) => {
    const keys = { "+": () => zoom(0.5), "=": () => zoom(0.5), "-": () => zoom(2),
      ArrowLeft: () => pan(-0.2), ArrowRight: () => pan(0.2), 0: () => { view = [0, end]; draw(); } };
    if (keys[event.key]) { event.preventDefault(); keys[event.key](); }
  });

  const legend = el("ul", { class: "legend" }, Object.entries(KINDS).map(([k, v]) => {
    const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.background = v.color;
    return el("li", {}, swatch, `${k} ${v.name}`);
  }));
  const toolbar = el("div", { class: "toolbar" },
    el("button", { type: "button", onclick: () => zoom(0.5), "aria-label": "Zoom in" }, "Zoom in"),
    el("button", { type: "button", onclick: () => zoom(2), "aria-label": "Zoom out" }, "Zoom out"),
    el("button", { type: "button", onclick: () => pan(-0.5) }, "← Earlier"),
    el("button", { type: "button", onclick: () => pan(0.5) }, "Later →"),
    el("button", { type: "button", onclick: () => { view = [0, end]; draw(); } }, "Reset"),
    readout);
  draw();
  return el("figure", { class: "gantt", id: "gantt" },
    el("figcaption", {}, el("strong", { text: `Pipeline timeline (${data.schedule}, ${data.stages} stages)` }),
      el("span", { class: "muted", text: ` first ${actions.length} actions` })),
    toolbar, root, legend);
}

/**
 * Horizontal stacked bars: one bar per row (a pipeline stage), one segment per part (an
 * energy kind), each segment titled with its value for a hover read-out.
 * rows: [{ label, parts: {kind: value} }]; kinds: the parts' order; fmt: value -> text.
 */
export function stackedBars({ title, rows, kinds, fmt, id, xLabel }) {
  const total = Math.max(...rows.map((r) => kinds.reduce((s, k) => s + (r.parts[k] || 0), 0)), 0);
  if (!rows.length || !(total > 0)) {
    return el("figure", { class: "chart empty", id }, el("figcaption", {}, el("strong", { text: title })),
      el("p", { class: "muted", text: "Nothing counted." }));
  }
  const barH = 26;
  const height = M.top + rows.length * (barH + 10) + M.bottom;
  const sx = scale([0, total], { log: false, a: M.left, b: W - M.right, domain: [0, total] });
  const root = svg("svg", { viewBox: `0 0 ${W} ${height}`, class: "chart-svg", role: "img",
    "aria-label": `${title}: ${xLabel} by stage and kind` });
  const grid = svg("g", { class: "grid" });
  for (const t of sx.ticks) {
    const x = sx.f(t);
    grid.append(svg("line", { x1: x, x2: x, y1: M.top, y2: height - M.bottom }),
      svg("text", { x, y: height - M.bottom + 16, "text-anchor": "middle", class: "tick", text: fmt(t) }));
  }
  grid.append(svg("text", { x: (M.left + W - M.right) / 2, y: height - 6, "text-anchor": "middle",
    class: "axis-label", text: xLabel }));
  root.append(grid);
  rows.forEach((row, i) => {
    const y = M.top + i * (barH + 10);
    root.append(svg("text", { x: M.left - 6, y: y + barH / 2 + 4, "text-anchor": "end", class: "tick", text: row.label }));
    let at = 0;
    kinds.forEach((kind, k) => {
      const value = row.parts[kind] || 0;
      if (!(value > 0)) return;
      const x0 = sx.f(at);
      at += value;
      root.append(svg("rect", { x: x0, y, width: Math.max(sx.f(at) - x0, 0.5), height: barH,
        fill: PALETTE[k % PALETTE.length], class: `segment kind-${kind}` },
      svg("title", { text: `${row.label}, ${kind}: ${fmt(value)}` })));
    });
  });
  const legend = el("ul", { class: "legend" }, kinds.map((kind, k) => {
    const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.background = PALETTE[k % PALETTE.length];
    return el("li", {}, swatch, kind);
  }));
  return el("figure", { class: "chart", id }, el("figcaption", {}, el("strong", { text: title })), root, legend);
}
