// DOM helpers. Everything the page shows from data goes through text nodes
// (textContent), never innerHTML: a job named <img src=x onerror=alert(1)> is text.

const SVG_NS = "http://www.w3.org/2000/svg";

/** An element with attributes, event handlers (onclick: fn) and children (strings become text). */
export function el(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** The same for SVG elements. */
export function svg(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "text") {
      node.textContent = String(value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace a node's children. */
export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** A short live message for screen readers and eyes (the #toast region). */
export function toast(message, kind = "info") {
  const box = document.getElementById("toast");
  box.className = kind;
  box.textContent = message;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.textContent = ""; box.className = ""; }, 6000);
}

export function fmtNumber(value, digits = 4) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e9) return value.toLocaleString("en");
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return value.toExponential(2);
  return Number(value.toPrecision(digits)).toString();
}

export function fmtPercent(value) {
  if (value === null || value === undefined) return "–";
  return `${(100 * value).toFixed(1)} %`;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function fmtTime(epochSeconds) {
  if (!epochSeconds) return "–";
  const d = new Date(epochSeconds * 1000);
  return d.toLocaleString("en-GB", { dateStyle: "short", timeStyle: "medium" });
}

/** A state badge: the state's word, coloured by a class. */
export function badge(state) {
  return el("span", { class: `badge state-${state}`, text: state });
}

/** A labelled progress bar (a native <progress>, so assistive tech reads it). */
export function progressBar(value, label) {
  const wrap = el("span", { class: "progress" });
  wrap.append(
    el("progress", { max: "1", value: String(value ?? 0), "aria-label": label }),
    el("span", { class: "progress-text", text: fmtPercent(value ?? 0) }),
  );
  return wrap;
}

/** Offer `blob` as a download named `filename` (artifacts, CSV). */
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
