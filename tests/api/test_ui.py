"""The dashboard (/ui) in a real browser: Debian's chromium driven by Playwright, against
the real API, Redis and Celery worker of conftest.py.

Screenshots of every page land in AIMC_UI_SCREENSHOTS (default runs/ui-screenshots).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import ROOT, LiveService

pytestmark = pytest.mark.long  # tens of seconds: run first (tests/conftest.py)

SHOTS = Path(os.environ.get("AIMC_UI_SCREENSHOTS", ROOT / "runs" / "ui-screenshots"))
XSS = "<img src=x onerror=alert(1)>"
# 400 updates of 4 micro-batches, a metric point every 10 micro-batches: 161 points over a
# few seconds (a minute on a busy machine), time to see the curve grow; 2 stages so the
# Gantt has rows
WATCHED = """\
name: ui-watched
seed: 0
dataset: {name: digits}
model: {kind: mlp, hidden: [64, 32], activation: tanh}
analog: {device: {model: softbounds, w_min: -1.0, w_max: 1.0, states: 1200}, update: expected}
optimizer: {algorithm: analog_sgd, lr: 0.1}
training: {steps: 400, micro_batch_size: 10, eval_every: 10}
pipeline: {stages: 2, schedule: gpipe, micro_batches: 4}
"""


def chromium_path() -> str:
    """The system chromium (the real binary behind Debian's /usr/bin/chromium wrapper)."""
    for candidate in (os.environ.get("AIMC_CHROMIUM"), "/usr/lib/chromium/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("no chromium: apt-get install -y chromium (.ci/run does)")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield b
        b.close()


class Page:
    """A browser tab on the dashboard that records what must never happen: alerts
    (script injected through data), console errors and page errors (CSP violations
    among them), requests to any other host."""

    def __init__(self, browser: Any, base: str, tmp: Path) -> None:
        self.ctx = browser.new_context(
            viewport={"width": 1280, "height": 900}, accept_downloads=True
        )
        self.page = self.ctx.new_page()
        self.base = base
        self.tmp = tmp
        self.alerts: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.foreign: list[str] = []  # requests leaving the server: there must be none (no CDN)
        self.page.on("request", self._request)

    def _request(self, request: Any) -> None:
        if not request.url.startswith((self.base, "data:", "blob:")):
            self.foreign.append(request.url)

    def _dialog(self, dialog: Any) -> None:
        if dialog.type == "confirm":  # delete asks first
            dialog.accept()
        else:
            self.alerts.append(dialog.message)
            dialog.dismiss()

    def go(self, hash_: str) -> None:
        self.page.goto(f"{self.base}/ui/{hash_}")

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / name), full_page=True)

    def download(self, locator: Any) -> Path:
        with self.page.expect_download() as info:
            locator.click()
        path = self.tmp / info.value.suggested_filename
        info.value.save_as(path)
        return path


def api_submit(service: LiveService, key: str, spec: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{service.url}/v1/jobs", json=spec, headers={"Authorization": f"Bearer {key}"})
    r.raise_for_status()
    return dict(r.json())


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def assert_labelled(page: Any) -> None:
    """Every visible form control on the page has an accessible name (a <label> or
    aria-label), so screen readers and Playwright's get_by_label find it."""
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter((e) => e.offsetParent !== null)
            .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                           && !(e.tagName === 'BUTTON' && e.textContent.trim()))
            .map((e) => e.outerHTML.slice(0, 80))"""
    )
    assert unnamed == [], unnamed


def test_page_headers_forbid_inline_scripts(live_service: LiveService) -> None:
    r = httpx.get(f"{live_service.url}/ui/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    scripts = re.findall(r"<script[^>]*>", r.text)
    assert scripts and all("src=" in s for s in scripts)  # no inline script
    assert httpx.get(f"{live_service.url}/ui").headers.get("location") == "/ui/"
    js = httpx.get(f"{live_service.url}/ui/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert js.headers["x-content-type-options"] == "nosniff"
    examples = httpx.get(f"{live_service.url}/ui/examples.json").json()
    assert "digits_analog_sgd.yaml" in {e["name"] for e in examples}
    assert httpx.get(f"{live_service.url}/ui/static/../app.py").status_code == 404
    # the dashboard is not part of the API's schema (nor fuzzed as such)
    paths = httpx.get(f"{live_service.url}/openapi.json").json()["paths"]
    assert not any(p.startswith("/ui") for p in paths)


def test_event_stream_parser_in_the_browser(browser: Any, live_service: LiveService) -> None:
    """The page's SSE reader, fed one byte at a time: ids (any text, as a resuming server
    sends them), keep-alive comments, CRLF split across reads, multi-line data, UTF-8."""
    page = browser.new_page()
    page.goto(f"{live_service.url}/ui/")
    result = page.evaluate(
        """async () => {
        const { readEventStream } = await import('/ui/static/api.js');
        const text = ': hello\\r\\nid: 1-0,0-0\\nevent: metric\\ndata: {"step": 1}\\r\\n\\r\\n'
          + ': keep-alive\\n\\nevent: state\\r\\ndata: a µs\\ndata: b\\nid: 2\\n\\n'
          + 'retry: 500\\ndata: plain\\n\\n';
        const bytes = new TextEncoder().encode(text);
        const stream = new ReadableStream({ start(c) {
          for (const b of bytes) c.enqueue(new Uint8Array([b]));
          c.close();
        } });
        const events = [];
        const state = { lastId: null, retryMs: 2000 };
        await readEventStream(stream, (e) => events.push(e), state);
        return { events, state };
    }"""
    )
    assert result["events"] == [
        {"type": "metric", "data": '{"step": 1}', "id": "1-0,0-0"},
        {"type": "state", "data": "a µs\nb", "id": "2"},
        {"type": "message", "data": "plain", "id": "2"},
    ]
    assert result["state"] == {"lastId": "2", "retryMs": 500}
    lines = page.evaluate(
        """async () => {
        const { lineOf } = await import('/ui/static/submit.js');
        const text = 'name: x\\ntraining:\\n  steps: -5\\nmodel: {kind: t}\\n';
        const locs = ['training.steps', 'model.kind', 'model', 'pipeline.stages'];
        return locs.map((loc) => lineOf(text, loc));
    }"""
    )
    assert lines == [2, 3, 3, -1]
    page.close()


def test_dashboard_end_to_end(browser: Any, live_service: LiveService, tmp_path: Path) -> None:
    """Sign in, submit (bad, then good), watch the curve grow, the Gantt, downloads,
    cancel, the XSS name, a sweep, dataset uploads, another user's view, sign out."""
    from playwright.sync_api import expect

    alice = live_service.new_user("ui-alice")
    ui = Page(browser, live_service.url, tmp_path)
    page = ui.page

    # sign in: a wrong key is refused; the right one is kept in storage, not in the URL
    ui.go("")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    ui.shot("01-sign-in.png")
    page.get_by_label("API key").fill("not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-error")).to_contain_text("not valid")
    page.get_by_label("API key").fill(alice)
    page.get_by_label("API key").press("Enter")  # keyboard: Enter submits
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    assert page.evaluate("localStorage.getItem('aimc.apiKey')") == alice
    assert alice not in page.url

    # submit: the API's errors appear at their field paths
    page.get_by_role("link", name="Submit", exact=True).click()
    editor = page.get_by_label("Job spec (YAML or JSON)")
    expect(editor).to_have_value(re.compile("digits-analog-sgd"))  # prefilled from examples/
    editor.fill("name: bad\ntraining: {steps: -5, eval_every: 10}\nmodel: {kind: transformer}\n")
    page.get_by_role("button", name="Submit", exact=True).click()
    errors = page.locator("#submit-errors .field-error")
    expect(errors.first).to_be_visible()
    text = page.locator("#submit-errors").inner_text()
    assert "training.steps" in text and "model.kind" in text, text
    assert "(line 2)" in text and "(line 3)" in text, text
    ui.shot("02-submit-errors.png")
    assert_labelled(page)
    editor.fill("name: [unclosed\n")
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(page.locator("#submit-errors")).to_contain_text("not valid YAML")

    # an aihwkit configuration picked from GET /v1/configs lands in the spec as written
    configs = page.get_by_label("aihwkit configuration")
    expect(configs.locator("option")).to_have_count(53)  # the 52 and "none"
    editor.fill("name: picked\nanalog: {update: expected}\n")
    configs.select_option("TTv2EcRamPreset")
    expect(editor).to_have_value(re.compile(r"config: TTv2EcRamPreset"))
    expect(editor).to_have_value(re.compile(r"update: expected"))  # the spec's own field kept
    configs.select_option("")
    expect(editor).not_to_have_value(re.compile("config:"))

    # a good spec: its page shows the curve growing while the job runs
    editor.fill(WATCHED)
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(page.get_by_role("heading", name="ui-watched")).to_be_visible()
    job_id = page.url.rsplit("/", 1)[-1]
    curves = page.locator("#curves")
    page.wait_for_function(
        "() => document.querySelector('#job-state')?.textContent === 'running' && "
        "Number(document.querySelector('#curves')?.dataset.points) >= 2",
        timeout=60_000,
    )
    seen = int(curves.get_attribute("data-points") or 0)
    page.wait_for_function(  # grew while the job still runs (both read in one frame)
        "() => document.querySelector('#job-state').textContent === 'running' && "
        f"Number(document.querySelector('#curves').dataset.points) > {seen + 2}",
        timeout=60_000,
    )
    expect(page.locator("#chart-loss path.line")).to_have_count(2)
    ui.shot("03-job-running.png")

    # finished: the Gantt (F, B and U bars; zoom), artifacts to download
    expect(page.locator("#job-state")).to_have_text("succeeded", timeout=240_000)
    gantt = page.locator("#gantt")
    expect(gantt).to_be_visible(timeout=20_000)
    # the energy estimate: accuracy against energy, the split by stage and kind
    expect(page.locator("#chart-energy-accuracy path.line")).to_have_count(1)
    expect(page.locator("#chart-energy-stages rect.segment").first).to_be_visible()
    expect(page.locator("#energy-facts")).to_contain_text("per sample")
    expect(page.locator("#energy-facts")).to_contain_text("on a GPU")
    page.locator("#energy").scroll_into_view_if_needed()
    ui.shot("03b-energy.png")
    for kind in "FBU":
        assert page.locator(f"#gantt rect.kind-{kind}").count() > 0, kind
    bars = page.locator("#gantt rect.bar").count()
    page.get_by_role("button", name="Zoom in").click()
    page.get_by_role("button", name="Zoom in").click()
    expect(gantt).to_contain_text("zoom ×4")
    assert page.locator("#gantt rect.bar").count() < bars  # fewer actions in view
    page.locator("#gantt svg.gantt-svg").focus()
    page.keyboard.press("ArrowRight")  # keyboard pans
    ui.shot("04-job-finished-gantt.png")
    assert_labelled(page)
    page.get_by_role("button", name="Reset").click()
    gantt.screenshot(path=str(SHOTS / "05-gantt.png"))
    page.get_by_label("simulated time (ms)").check()  # curves against simulated time
    expect(page.locator("#chart-loss")).to_contain_text("simulated time (ms)")
    page.get_by_label("log x").check()
    expect(page.locator("#chart-loss")).to_contain_text("simulated time (ms) (log)")
    expect(page.locator("#chart-loss path.line")).to_have_count(2)
    csv_path = ui.download(page.get_by_role("button", name="Download metrics.csv"))
    assert csv_path.read_text().startswith("step,samples,epoch,sim_time_ns")
    weights = ui.download(page.get_by_role("button", name="Download weights.safetensors"))
    assert weights.stat().st_size > 1000

    # another job, named like an attack, is cancelled from its page; the name stays text
    long_job = api_submit(
        live_service, alice, {"name": XSS, "training": {"steps": 100_000, "eval_every": 500}}
    )
    ui.go(f"#/jobs/{long_job['id']}")
    expect(page.locator("h1.job-title")).to_have_text(XSS)
    expect(page.locator("#job-state")).to_have_text("running", timeout=60_000)
    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator("#job-state")).to_have_text("cancelled", timeout=30_000)
    assert page.locator("main img").count() == 0
    ui.shot("06-job-cancelled-xss-name.png")

    # a job that fails at run time shows its error
    failing = api_submit(
        live_service, alice, {"name": "ui-fails", "device": "cuda", "training": {"steps": 5}}
    )
    ui.go(f"#/jobs/{failing['id']}")
    expect(page.locator("#job-state")).to_have_text("failed", timeout=60_000)
    expect(page.locator("#job-error")).to_contain_text("torch sees no CUDA device")
    ui.shot("07-job-failed-error.png")

    # the list: live states, the XSS name as text, filters
    page.get_by_role("link", name="Jobs", exact=True).click()
    rows = page.locator("#jobs-table tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("#jobs-table")).to_contain_text(XSS)
    ui.shot("08-jobs-list.png")
    assert_labelled(page)
    page.get_by_label("State").select_option("cancelled")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("cancelled")
    page.get_by_label("State").select_option("")
    page.get_by_label("Name").fill("ui-watched")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("succeeded")

    # a sweep over two schedules x two seeds: table, a band per schedule, CSV
    page.get_by_role("link", name="Submit", exact=True).click()
    base = {"name": "s", "training": {"steps": 120, "eval_every": 20}, "pipeline": {"stages": 2}}
    page.get_by_label("Job spec (YAML or JSON)").fill(json.dumps(base))  # JSON is YAML too
    page.get_by_text("Run as a sweep (optional)").click()
    page.get_by_label("Sweep name").fill("ui-sweep")
    grid = page.get_by_label("Grid: one KEY=V1,V2 per line")
    grid.fill("pipeline.schedule=gpipe,async\nseed=0,1")
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(page.get_by_role("heading", name="ui-sweep")).to_be_visible()
    expect(page.locator("#sweep-table tbody tr")).to_have_count(4)
    sweep_url = page.url
    assert_labelled(page)
    # meanwhile the jobs list follows their states without a reload
    page.get_by_role("link", name="Jobs", exact=True).click()
    sweep_rows = page.locator("#jobs-table tbody tr", has_text="ui-sweep")
    expect(sweep_rows).to_have_count(4)
    expect(sweep_rows.locator(".state-succeeded")).not_to_have_count(4)
    ui.shot("09-jobs-list-live.png")
    expect(sweep_rows.locator(".state-succeeded")).to_have_count(4, timeout=120_000)
    page.goto(sweep_url)
    expect(page.get_by_text("All ended.")).to_be_visible(timeout=30_000)
    page.wait_for_function(
        "() => document.querySelectorAll('#chart-sweep polygon.band').length === 2"
    )
    expect(page.locator("#chart-sweep")).to_contain_text("schedule=gpipe (2 seeds)")
    ui.shot("10-sweep.png")
    sweep_csv = ui.download(page.get_by_role("button", name="Download CSV")).read_text()
    header, *lines = sweep_csv.strip().splitlines()
    assert header.startswith("job_id,pipeline.schedule,seed,state,test_accuracy")
    assert len(lines) == 4
    page.get_by_role("link", name="Sweeps", exact=True).click()
    expect(page.locator("#sweeps-table")).to_contain_text("ui-sweep")

    # paging: 7 jobs, 3 a page
    ui.go("#/jobs?limit=3")
    rows = page.locator("#jobs-table tbody tr")
    expect(rows).to_have_count(3)
    newest = rows.first.get_attribute("data-job")
    page.get_by_role("button", name="Older →").click()
    expect(rows).to_have_count(3)
    expect(rows.first).not_to_have_attribute("data-job", newest or "")
    page.get_by_role("button", name="Older →").click()
    expect(rows).to_have_count(1)
    expect(page.get_by_role("button", name="Older →")).to_be_disabled()
    page.get_by_role("button", name="← Newer").click()
    page.get_by_role("button", name="← Newer").click()
    expect(rows.first).to_have_attribute("data-job", newest or "")
    expect(page.get_by_role("button", name="← Newer")).to_be_disabled()

    # dataset uploads: a broken file's error is shown; a good one is listed
    page.get_by_role("link", name="Submit", exact=True).click()
    page.get_by_label(".npz file").set_input_files(
        {"name": "broken.npz", "mimeType": "application/octet-stream", "buffer": b"not a zip"}
    )
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#dataset-result")).to_contain_text("Upload refused (422")
    ui.shot("11-dataset-upload-error.png")
    rng = np.random.default_rng(0)
    good = npz_bytes(
        x_train=rng.normal(size=(40, 6)).astype(np.float32),
        y_train=rng.integers(0, 3, 40),
        x_test=rng.normal(size=(10, 6)).astype(np.float32),
        y_test=rng.integers(0, 3, 10),
    )
    page.get_by_label(".npz file").set_input_files(
        {"name": "tiny.npz", "mimeType": "application/octet-stream", "buffer": good}
    )
    page.get_by_label("Name", exact=True).fill("tiny")
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#dataset-result")).to_contain_text("Uploaded tiny: 40 training")
    expect(page.locator("#datasets-table")).to_contain_text("tiny")
    ui.shot("12-dataset-uploaded.png")

    # delete the finished job from its page
    ui.go(f"#/jobs/{job_id}")
    page.get_by_role("button", name="Delete job").click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(page.locator("#jobs-table")).not_to_contain_text("ui-watched")

    # sign out clears the key; another user sees none of alice's jobs
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("localStorage.getItem('aimc.apiKey')") is None
    page.get_by_label("API key").fill(live_service.new_user("ui-bob"))
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#jobs-table")).to_contain_text("No jobs yet")
    ui.shot("13-other-user-sees-nothing.png")
    ui.go("#/sweeps")
    expect(page.locator("#sweeps-table")).to_contain_text("No sweeps yet")
    ui.go("#/submit")
    expect(page.locator("#datasets-table")).to_contain_text("No uploads yet")
    ui.go(f"#/jobs/{long_job['id']}")
    expect(page.get_by_role("heading", name="Something went wrong")).to_be_visible()
    expect(page.locator("main")).to_contain_text("no job")

    assert ui.alerts == [], ui.alerts
    assert ui.foreign == [], ui.foreign
    # the console reports the refused requests the test made on purpose (the wrong key's
    # 401, the bad spec's 422, bob's 404); ERR_INCOMPLETE_CHUNKED_ENCODING is an event
    # stream the server dropped (its Redis read timed out), which the page reconnects
    expected = ("status of 401", "status of 404", "status of 422", "ERR_INCOMPLETE_CHUNKED")
    unexpected = [e for e in ui.errors if not any(x in e for x in expected)]
    assert unexpected == [], unexpected
    ui.ctx.close()
