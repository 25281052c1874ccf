// The /v1 API as the page uses it: the API key from browser storage in an
// Authorization header (never in a URL), problem+json errors as ApiError, and a
// Server-Sent Events reader built on fetch (EventSource cannot send headers).

import { toast } from "./dom.js";

const KEY = "aimc.apiKey";

export const auth = {
  get key() { return localStorage.getItem(KEY); },
  set(key) { localStorage.setItem(KEY, key); },
  clear() { localStorage.removeItem(KEY); },
};

/** An API error: status, title, detail and (422) errors [{loc, msg}]. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.title = problem.title || `HTTP ${status}`;
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
  }
}

/** Listeners called with no argument when the API answers 401 (the key is no longer valid). */
export const onUnauthorized = new Set();

function headers(extra = {}, key = auth.key) {
  const out = { ...extra };
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

async function fail(response, signingIn = false) {
  let problem = {};
  try {
    problem = await response.json();
  } catch {
    problem = { detail: `${response.status} ${response.statusText}` };
  }
  if (response.status === 401 && !signingIn) onUnauthorized.forEach((fn) => fn());
  const error = new ApiError(response.status, problem);
  const retry = response.headers.get("Retry-After");
  if (response.status === 429 && retry) error.message += ` (retry in ${retry} s)`;
  throw error;
}

/**
 * Call the API. `json` is sent as a JSON body; `body` as is (uploads). Returns parsed
 * JSON, or the Response itself with `raw: true` (downloads). `key` tries a key that is
 * not stored yet (sign-in): its 401 is the caller's to report.
 */
export async function api(path, { method = "GET", json, body, contentType, raw = false, signal, key } = {}) {
  const extra = {};
  if (json !== undefined) {
    extra["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (contentType) {
    extra["Content-Type"] = contentType;
  }
  const response = await fetch(path, { method, body, headers: headers(extra, key ?? auth.key), signal });
  if (!response.ok) await fail(response, key !== undefined);
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

/** Query string of the defined values in `params`. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : "";
}

/**
 * Parse an SSE byte stream (the WHATWG event-stream format): `event:`, `data:` (joined
 * by newlines), `id:`, `retry:` fields, `:` comment lines (keep-alives) ignored, a blank
 * line dispatches. Calls onEvent({type, data, id}) per event; returns the last id seen.
 */
export async function readEventStream(body, onEvent, state) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let type = "";
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    // a trailing \r may be half of a \r\n split across reads: it waits with the rest
    const cut = buffer.endsWith("\r") ? buffer.length - 1 : buffer.length;
    const lines = buffer.slice(0, cut).split(/\r\n|\r|\n/);
    buffer = lines.pop() + buffer.slice(cut); // an incomplete last line waits for more bytes
    for (const line of lines) {
      if (line === "") {
        if (data.length) onEvent({ type: type || "message", data: data.join("\n"), id: state.lastId });
        type = "";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue; // a comment: keep-alive
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? "" : line.slice(colon + 1);
      if (val.startsWith(" ")) val = val.slice(1);
      if (field === "event") type = val;
      else if (field === "data") data.push(val);
      else if (field === "id" && !val.includes("\0")) state.lastId = val;
      else if (field === "retry" && /^\d+$/.test(val)) state.retryMs = Number(val);
    }
  }
}

/**
 * Follow a job's events until `isDone()` says so or `signal` aborts: reconnects after a
 * dropped connection (with Last-Event-ID when the server sent ids). The caller drops
 * duplicates (a server without resumption replays from the start).
 */
export async function followEvents(path, onEvent, { signal, isDone }) {
  const state = { lastId: null, retryMs: 2000 };
  while (!signal.aborted && !isDone()) {
    try {
      const extra = { Accept: "text/event-stream" };
      if (state.lastId) extra["Last-Event-ID"] = state.lastId;
      const response = await fetch(path, { headers: headers(extra), signal, cache: "no-store" });
      if (!response.ok) await fail(response);
      await readEventStream(response.body, onEvent, state);
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status !== 429 && error.status < 500) throw error;
    }
    if (signal.aborted || isDone()) return;
    await new Promise((resolve) => setTimeout(resolve, state.retryMs));
  }
}

/**
 * Run `fn` now and every `ms` after it finishes, until `signal` aborts; skipped while
 * the tab is hidden. A passing failure (network, 429, 5xx) is shown and retried; a
 * 401 (signed out) ends the loop, a 404 (the thing is gone) is thrown to the page.
 */
export async function every(ms, fn, signal) {
  while (!signal.aborted) {
    if (!document.hidden) {
      try {
        await fn();
      } catch (error) {
        if (signal.aborted || (error instanceof ApiError && error.status === 401)) return;
        if (error instanceof ApiError && error.status === 404) throw error;
        toast(`Could not refresh: ${error.message}; retrying.`, "error");
      }
    }
    await new Promise((resolve) => setTimeout(resolve, ms));
  }
}
