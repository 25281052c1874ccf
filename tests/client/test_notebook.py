"""The client in a notebook: a Job's metrics as a pandas DataFrame (pandas optional), and
its progress as an HTML bar redrawn in place inside a real Jupyter kernel, a text bar
elsewhere. Against a live API and worker."""

from __future__ import annotations

import os
import sys
import textwrap
from typing import Any

import pandas as pd
import pytest

from aimc_client import Client, Job
from aimc_client.frames import metrics_frame
from aimc_client.progress import HtmlBar, TextBar, in_notebook, job_bar
from aimc_spec.metric_record import METRIC_COLUMNS
from tests.conftest import ROOT, LiveService

TINY = {
    "model": {"hidden": [16]},
    "training": {"steps": 20, "micro_batch_size": 8, "eval_every": 5},
}


@pytest.fixture(scope="module")
def finished(live_service: LiveService) -> Job:
    """A finished job of a fresh user (several metric points)."""
    client = Client(live_service.url, live_service.new_user("notebook"))
    job = client.job(client.submit({"name": "nb", **TINY})["id"])
    assert job.wait(progress=False, poll_s=0.2)["state"] == "succeeded"
    return job


def test_metrics_come_as_a_frame_in_the_columns_of_metrics_csv(finished: Job) -> None:
    points = finished.metrics()
    frame = finished.metrics(frame=True)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == METRIC_COLUMNS
    assert len(points) >= 3 and len(frame) == len(points)
    assert frame["step"].tolist() == [p["step"] for p in points]
    assert frame["test_loss"].tolist() == pytest.approx([p["test_loss"] for p in points])
    later = finished.metrics(since=points[0]["step"], frame=True)
    assert later["step"].tolist() == [p["step"] for p in points[1:]]  # since is exclusive


def test_no_points_yet_is_an_empty_frame_with_the_columns() -> None:
    frame = metrics_frame([])
    assert frame.empty and list(frame.columns) == METRIC_COLUMNS


def test_without_pandas_the_error_says_how_to_get_it(
    finished: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` fails as if absent
    with pytest.raises(ImportError, match="pip install pandas"):
        finished.metrics(frame=True)
    assert finished.metrics()  # the points themselves need no pandas


def test_outside_a_kernel_the_bar_is_text_a_line_per_change(
    live_service: LiveService, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not in_notebook()
    assert isinstance(job_bar(), TextBar)
    client = Client(live_service.url, live_service.new_user("script"))
    job = client.job(client.submit(TINY)["id"])
    capsys.readouterr()
    assert job.wait(poll_s=0.1)["state"] == "succeeded"
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("succeeded 100.0% loss ")
    assert len(lines) == len(set(lines))  # a poll that changes nothing prints nothing


KERNEL_CODE = """
from aimc_client import Client
from aimc_client.progress import in_notebook
print(in_notebook())
client = Client({url!r}, {key!r})
job = client.job(client.submit({spec!r})["id"])
print(job.wait(poll_s=0.1)["state"])
"""


def run_in_kernel(code: str) -> list[dict[str, Any]]:
    """The iopub messages of running `code` in a fresh IPython kernel (this interpreter,
    the repository as its working directory) until it is idle again."""
    from jupyter_client.manager import start_new_kernel

    manager, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT), env=dict(os.environ))
    try:
        msg_id = kc.execute(code)
        messages = []
        while True:
            msg = kc.get_iopub_msg(timeout=120)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            messages.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return messages
    finally:
        kc.stop_channels()
        manager.shutdown_kernel(now=True)


def test_in_a_jupyter_kernel_the_bar_is_html_updated_in_place(live_service: LiveService) -> None:
    code = KERNEL_CODE.format(url=live_service.url, key=live_service.new_user("kernel"), spec=TINY)
    messages = run_in_kernel(textwrap.dedent(code))
    errors = [m["content"] for m in messages if m["msg_type"] == "error"]
    assert not errors, errors
    out = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
    assert out.split() == ["True", "succeeded"]
    shown = [m for m in messages if m["msg_type"] == "display_data"]
    updates = [m for m in messages if m["msg_type"] == "update_display_data"]
    assert len(shown) == 1 and updates  # one output, redrawn in place
    display_id = shown[0]["content"]["transient"]["display_id"]
    assert all(u["content"]["transient"]["display_id"] == display_id for u in updates)
    last = updates[-1]["content"]["data"]["text/html"]
    assert '<progress max="1" value="1.0000"' in last and "succeeded 100.0% loss " in last
    assert "text/html" in shown[0]["content"]["data"]


def test_the_html_bar_escapes_what_it_shows() -> None:
    job = {"id": "j", "name": "<b>x</b>", "state": "running", "progress": 0.5}
    assert "&lt;b&gt;x&lt;/b&gt;" in HtmlBar.render(job) and "<b>" not in HtmlBar.render(job)
