"""The holes an outside probe found (issue 23): ids with a colon, damaged uploads,
chunked bodies past the limit, an event stream outliving its key, headers, HEAD, user
names, the documentation offline. Real Redis, a real worker, real HTTP where it
matters (uvicorn: chunked bodies, streams)."""

from __future__ import annotations

import io
import select
import socket
import struct
import uuid
import zipfile
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from aimc_store.store import JobStore
from service.app import create_app
from service.settings import Settings
from tests.conftest import LiveService, store_url

ADMIN = "probe-admin"
SHORT = {"training": {"steps": 20, "micro_batch_size": 8, "eval_every": 10}}
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def client(worker_store: JobStore) -> Iterator[TestClient]:
    settings = Settings(
        redis_url=store_url(worker_store),
        key_prefix=worker_store.p,
        admin_key=ADMIN,
        max_body_bytes=20_000,
        max_dataset_bytes=200_000,
        artifact_dir=worker_store.artifact_dir,
        artifact_inline_max_bytes=worker_store.inline_max_bytes,
    )
    # server errors answered as they would be, not raised into the test
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def new_user(client: TestClient, name: str) -> dict[str, str]:
    r = client.post(
        "/v1/users",
        json={"name": f"{name}-{uuid.uuid4().hex[:6]}"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['api_key']}"}


def npz_bytes(n: int = 40, **replace: np.ndarray) -> bytes:
    """A small valid dataset (uncompressed .npz), with arrays replaced as given."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = np.arange(n) % 2
    arrays = {"x_train": x[:30], "y_train": y[:30], "x_test": x[30:], "y_test": y[30:]}
    buffer = io.BytesIO()
    np.savez(buffer, **{**arrays, **replace})
    return buffer.getvalue()


def assert_problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status
    return body


# ids with a colon --------------------------------------------------------------------


def test_ids_with_a_colon_are_refused_by_the_route_alike_for_anyone(client: TestClient) -> None:
    """`<A's id>:metrics` named job A's metrics stream as a job hash (WRONGTYPE: 500) for
    B while a missing id gave 404: existence leaked. Now the route's pattern refuses any
    id with a colon before a key is formed: the same 422 for A, for B and for an id that
    does not exist."""
    a, b = new_user(client, "ann"), new_user(client, "ben")
    job = client.post("/v1/jobs", json=SHORT, headers=a).json()["id"]
    dataset = client.post("/v1/datasets", content=npz_bytes(), headers=a).json()["id"]
    sweep = client.post(
        "/v1/sweeps", json={"spec": SHORT, "grid": {"seed": [1]}}, headers=a
    ).json()["id"]
    templates = [
        ("GET", "/v1/jobs/{}:metrics"),
        ("GET", "/v1/jobs/{}:events"),
        ("GET", "/v1/jobs/{}:artifacts"),
        ("GET", "/v1/jobs/{}:artifact:result.json"),
        ("GET", "/v1/jobs/{}:metrics/metrics"),
        ("GET", "/v1/jobs/{}:events/events"),
        ("POST", "/v1/jobs/{}:cancel/cancel"),
        ("DELETE", "/v1/jobs/{}:metrics"),
        ("GET", "/v1/jobs/{}/artifacts/result.json:x"),
        ("GET", "/v1/datasets/{}:data"),
        ("DELETE", "/v1/datasets/{}:data"),
        ("GET", "/v1/sweeps/{}:plot"),
        ("GET", "/v1/sweeps/{}:plot/plot.png"),
    ]
    for method, template in templates:
        own = job if "/jobs/" in template else dataset if "datasets" in template else sweep
        answers = []
        for auth, ident in ((a, own), (b, own), (b, uuid.uuid4().hex)):
            r = client.request(method, template.format(ident), headers=auth)
            body = assert_problem(r, 422)
            assert "pattern" in body["detail"], body
            answers.append((r.status_code, body["title"]))
        assert len(set(answers)) == 1, (template, answers)
    r = client.post("/v1/users/abc:key/key", headers={"Authorization": f"Bearer {ADMIN}"})
    assert_problem(r, 422)
    # the ids themselves still work
    assert client.get(f"/v1/jobs/{job}", headers=a).status_code == 200
    assert client.get(f"/v1/datasets/{dataset}", headers=a).status_code == 200
    assert client.get(f"/v1/sweeps/{sweep}", headers=a).status_code == 200
    assert_problem(client.get(f"/v1/jobs/{job}", headers=b), 404)


def test_an_unexpected_error_answers_problem_json_500_naming_no_internals(
    worker_store: JobStore,
) -> None:
    app = create_app(Settings(redis_url=store_url(worker_store), key_prefix=worker_store.p))

    @app.get("/v1/boom")
    def boom() -> None:
        raise RuntimeError("secret-internal-detail at /srv/aimc/store.py")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/v1/boom")
    body = assert_problem(r, 500)
    assert "secret" not in r.text and "RuntimeError" not in r.text and "/srv" not in r.text
    assert body["title"] == "Internal Server Error"


# damaged uploads -----------------------------------------------------------------------


def _flipped(data: bytes) -> bytes:
    """One byte of x_train's data flipped (the archive's CRC no longer matches)."""
    start = data.index(b"x_train.npy") + 200  # past the local header and the .npy header
    return data[:start] + bytes([data[start] ^ 0xFF]) + data[start + 1 :]


def _lying_central_directory(data: bytes) -> bytes:
    """x_train's central directory entry says it unpacks to 300 bytes (it holds ~600)."""
    entry = data.index(b"PK\x01\x02")
    while data[entry + 46 : entry + 46 + 11] != b"x_train.npy":
        entry = data.index(b"PK\x01\x02", entry + 4)
    return data[: entry + 24] + struct.pack("<I", 300) + data[entry + 28 :]


def _huge_header() -> bytes:
    """A valid archive but for x_train, whose .npy header claims a (2**40, 16) float64
    array (numpy allocated it before reading: MemoryError) over 64 bytes of data."""
    member = io.BytesIO()
    header = {"descr": "<f8", "fortran_order": False, "shape": (2**40, 16)}
    np.lib.format.write_array_header_1_0(member, header)
    member.write(b"\0" * 64)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(npz_bytes())) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, member.getvalue() if name == "x_train.npy" else src.read(name))
    return out.getvalue()


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: _flipped(npz_bytes()), "cannot read as .npz"),
        (lambda: _flipped(_compressed()), "cannot read as .npz"),
        (lambda: _lying_central_directory(npz_bytes()), "x_train"),
        (_huge_header, "(1099511627776, 16)"),
        (lambda: b"not a zip at all", "not an .npz (zip) archive"),
        (lambda: npz_bytes()[:-40], "not an .npz (zip) archive"),
    ],
    ids=["flipped-byte", "flipped-byte-deflated", "lying-size", "huge-header", "junk", "cut"],
)
def test_a_damaged_upload_is_a_422_naming_the_problem(client: TestClient, make, words) -> None:
    r = client.post("/v1/datasets", content=make(), headers=new_user(client, "dora"))
    body = assert_problem(r, 422)
    assert body["errors"][0]["loc"] == "file" and words in body["detail"], body


def _compressed() -> bytes:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = np.arange(40) % 2
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    return buffer.getvalue()


# chunked bodies ------------------------------------------------------------------------


def _send_chunked(url: str, path: str, key: str, total: int) -> tuple[int, bytes]:
    """POST a chunked body of up to `total` bytes, a chunk at a time, until the server
    answers; (bytes sent, the answer's first bytes). A server that reads the body whole
    before answering takes all `total`."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )
    chunk = b"[" + b"1," * 32_000
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    sock.setblocking(False)
    try:
        while sent < total:
            readable, writable, _ = select.select([sock], [sock], [], 30)
            if readable:
                break
            if writable:
                try:
                    sent += sock.send(framed)  # a partial send only misframes the tail
                except BlockingIOError:
                    continue
        sock.setblocking(True)
        sock.settimeout(30)
        answer = b""
        while b"}" not in answer.partition(b"\r\n\r\n")[2]:  # the headers and the JSON body
            more = sock.recv(4096)
            if not more:
                break
            answer += more
        return sent, answer
    finally:
        sock.close()


def test_a_chunked_body_over_the_limit_is_refused_without_reading_it(
    live_service: LiveService,
) -> None:
    """A chunked body declares no length: it was read whole (200 MB) before its 422.
    Now the 413 comes once the body passes max_body_bytes (1 MB by default)."""
    key = live_service.new_user("chunky")
    total = 200 * 1024 * 1024
    sent, answer = _send_chunked(live_service.url, "/v1/jobs", key, total)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"application/problem+json" in answer and b"max_body_bytes" in answer
    assert sent < total // 10, sent  # what the socket buffers took, not the body


# event streams -------------------------------------------------------------------------


def test_an_event_stream_ends_when_its_key_is_rotated(live_service: LiveService) -> None:
    """After the admin rotated B's key, B's open stream went on delivering events; now it
    ends at its next read while the job runs on."""
    admin = {"Authorization": f"Bearer {live_service.admin_key}"}
    spec = {"training": {"steps": 200_000, "micro_batch_size": 8, "eval_every": 200}}
    with httpx.Client(base_url=live_service.url, timeout=60) as http:
        made = http.post(
            "/v1/users", json={"name": f"stream-{uuid.uuid4().hex[:6]}"}, headers=admin
        )
        auth = {"Authorization": f"Bearer {made.json()['api_key']}"}
        job = http.post("/v1/jobs", json=spec, headers=auth).json()["id"]
        with http.stream("GET", f"/v1/jobs/{job}/events", headers=auth) as stream:
            lines = stream.iter_lines()
            for line in lines:  # until the job runs and streams metric points
                if line == "event: metric":
                    break
            rotated = http.post(f"/v1/users/{made.json()['id']}/key", headers=admin)
            assert rotated.status_code == 200
            after = [line for line in lines if line.startswith("event:")]
        assert after.count("event: metric") < 20  # the reads in flight, then the end
        # the stream ended, the job did not: the stream stopped because of the key
        store = live_service.store
        state = store.jobs.get(job).state  # type: ignore[union-attr]
        store.jobs.request_cancel(job)
        assert state == "running"


# headers, HEAD, names, documentation -----------------------------------------------------


def test_v1_answers_carry_nosniff_and_no_store(client: TestClient) -> None:
    auth = new_user(client, "hal")
    answers = [
        client.get("/v1/jobs", headers=auth),  # 200
        client.get("/v1/jobs/nope", headers=auth),  # 404
        client.get("/v1/jobs"),  # 401
        client.post("/v1/jobs", content=b"x" * 30_000, headers=auth),  # 413
        client.post("/v1/jobs", json={"training": {"steps": -1}}, headers=auth),  # 422
    ]
    for r in answers:
        assert r.headers["x-content-type-options"] == "nosniff", (r.status_code, r.headers)
        assert r.headers["cache-control"] == "no-store", (r.status_code, r.headers)


def test_head_works_wherever_get_does(client: TestClient) -> None:
    """HEAD /healthz and HEAD /ui/ answered 405; now HEAD is the GET without its body."""
    auth = new_user(client, "ivy")
    for path, headers in [
        ("/healthz", {}),
        ("/ui/", {}),
        ("/docs", {}),
        ("/openapi.json", {}),
        ("/v1/jobs", auth),
    ]:
        got = client.get(path, headers=headers)
        head = client.head(path, headers=headers)
        assert head.status_code == got.status_code == 200, (path, head.status_code)
        assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"]
    # a job's event stream: the headers, then the end (not a stream left open)
    job = client.post("/v1/jobs", json=SHORT, headers=auth).json()["id"]
    head = client.head(f"/v1/jobs/{job}/events", headers=auth)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"].startswith("text/event-stream")
    assert client.head("/v1/jobs/nope", headers=auth).status_code == 404


@pytest.mark.parametrize("name", ["a\x00b", "a\rb", "a\nb", "tab\there", "del\x7f"])
def test_user_names_refuse_control_characters(client: TestClient, name: str) -> None:
    r = client.post("/v1/users", json={"name": name}, headers={"Authorization": f"Bearer {ADMIN}"})
    body = assert_problem(r, 422)
    assert body["errors"][0]["loc"] == "name", body


def test_the_documentation_pages_need_no_internet(client: TestClient) -> None:
    """/docs loaded Swagger UI from a CDN (blank on a lab network); every script and
    stylesheet the pages name is now served by the API itself."""
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assets = [part.split('"')[1] for part in html.split("src=")[1:] + html.split("href=")[1:]]
        assert assets, html
        for asset in assets:
            assert asset.startswith("/"), (page, asset)  # this origin, no CDN
            r = client.get(asset)
            assert r.status_code == 200 and len(r.content) > 0, (page, asset)
