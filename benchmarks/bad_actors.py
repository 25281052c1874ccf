"""The soak's abusive clients: what an outside probe and a careless user sent.

Each runs in a thread until `stop` is set, as a user of its own, and counts every
answer in the soak's Tally (a 5xx from any of them fails the soak). What each expects:
  uploads   oversized (413), a flipped byte, a (2**40, 16) header, junk bytes (422)
  chunked   a chunked JSON body far past the 1 MB limit to POST /v1/jobs (413, read
            only until it passed the limit)
  colons    ids with a colon on every route that takes one (422, never a 500)
  flooder   jobs as fast as the API takes them (202 until its queued limit, then 429):
            fair share keeps the honest users' waits short meanwhile
"""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np

FLOOD_SPEC = {"training": {"steps": 200, "micro_batch_size": 8, "eval_every": 100}}
CHUNKED_BYTES = 50 * 1024 * 1024
PAUSE_S = 0.2  # between two abusive requests of one actor


def _npz(**replace: np.ndarray) -> bytes:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = np.arange(40) % 2
    arrays = {"x_train": x[:30], "y_train": y[:30], "x_test": x[30:], "y_test": y[30:]}
    buffer = io.BytesIO()
    np.savez(buffer, **{**arrays, **replace})
    return buffer.getvalue()


def _flipped() -> bytes:
    data = _npz()
    at = data.index(b"x_train.npy") + 200
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def _huge_header() -> bytes:
    member = io.BytesIO()
    header = {"descr": "<f8", "fortran_order": False, "shape": (2**40, 16)}
    np.lib.format.write_array_header_1_0(member, header)
    member.write(b"\0" * 64)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(_npz())) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, member.getvalue() if name == "x_train.npy" else src.read(name))
    return out.getvalue()


def _oversized() -> Iterator[bytes]:
    """70 MB, streamed (chunked): over the 64 MiB upload limit."""
    block = b"\0" * (1024 * 1024)
    for _ in range(70):
        yield block


def uploads(http: httpx.Client, request: Callable[..., httpx.Response]) -> None:
    for body in (_flipped(), _huge_header(), b"not an npz", _oversized()):
        request(http, "POST", "/v1/datasets", content=body)


def chunked(url: str, key: str, count: Callable[[int], None]) -> None:
    """A chunked body sent until the API answers (413 once past 1 MB)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(
            f"POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"[" + b"1," * 32_000
        framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        sent = 0
        try:
            while sent < CHUNKED_BYTES:
                sock.sendall(framed)
                sent += len(framed)
        except OSError:
            pass  # the API answered and closed: the rest was never read
        answer = sock.recv(64)
    if answer.startswith(b"HTTP/1.1 "):
        count(int(answer[9:12]))


def colons(http: httpx.Client, request: Callable[..., httpx.Response], own: str) -> None:
    for path in (
        f"/v1/jobs/{own}:metrics",
        f"/v1/jobs/{own}:events",
        f"/v1/jobs/{own}:artifact:result.json",
        f"/v1/datasets/ds_{uuid.uuid4().hex[:16]}:data",
        f"/v1/sweeps/sw_{uuid.uuid4().hex[:16]}:plot",
    ):
        request(http, "GET", path)


def flood(http: httpx.Client, request: Callable[..., httpx.Response]) -> None:
    request(http, "POST", "/v1/jobs", json=FLOOD_SPEC, retry=False)


def run_actor(
    kind: str,
    url: str,
    key: str,
    stop: threading.Event,
    request: Callable[..., httpx.Response],
    count: Callable[[int], None],
) -> None:
    """Repeat the `kind` of abuse until `stop`."""
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    own = ""
    if kind == "colons":
        made = request(http, "POST", "/v1/jobs", json=FLOOD_SPEC)
        own = made.json().get("id", uuid.uuid4().hex) if made.status_code == 202 else "x"
    actions: dict[str, Callable[[], Any]] = {
        "uploads": lambda: uploads(http, request),
        "chunked": lambda: chunked(url, key, count),
        "colons": lambda: colons(http, request, own),
        "flooder": lambda: flood(http, request),
    }
    while not stop.is_set():
        # a dropped or refused connection (the API restarting): httpx's are counted by
        # the tally, a raw socket's (chunked) is not an answer
        with contextlib.suppress(httpx.TransportError, OSError):
            actions[kind]()
        time.sleep(PAUSE_S)
    http.close()


KINDS = ("uploads", "chunked", "colons", "flooder")
