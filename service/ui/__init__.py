"""The dashboard: a static single-page app under /ui, served by the API itself.

Every asset ships in the package (service/ui/static; the one library, js-yaml, is
vendored as a file), so the dashboard works offline and installing needs no node. The
page talks to the same /v1 API as any client, with the user's API key in an
Authorization header; the key never appears in a URL. The HTML document carries a
Content-Security-Policy that allows scripts from this origin only (no inline scripts,
no eval), so a job name or error that reaches the page cannot run.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope

STATIC = Path(__file__).resolve().parent / "static"
# the repository's examples/ (editable installs), else ./examples (the Docker image's /app)
EXAMPLE_DIRS = (Path(__file__).resolve().parents[2] / "examples", Path.cwd() / "examples")
MAX_EXAMPLE_BYTES = 20_000

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("")
def ui_root() -> RedirectResponse:
    """/ui -> /ui/ so the page's relative asset paths resolve under /ui/."""
    return RedirectResponse("/ui/", status_code=308)


@router.get("/")
def index() -> FileResponse:
    """The page; all navigation after this is client-side (#/jobs, #/jobs/ID, ...)."""
    return FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)


@router.get("/examples.json")
def examples() -> JSONResponse:
    """The example specs (YAML text) that prefill the submit page's editor."""
    found: dict[str, str] = {}
    for folder in EXAMPLE_DIRS:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.yaml")):
            if path.name not in found and path.stat().st_size <= MAX_EXAMPLE_BYTES:
                found[path.name] = path.read_text()
    body = [{"name": name, "text": text} for name, text in sorted(found.items())]
    return JSONResponse(body, headers={"Cache-Control": "no-cache"})


class _Static(StaticFiles):
    """StaticFiles with the security headers on every asset (nosniff matters for the
    module scripts; the CSP on the document is what keeps inline scripts out)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if scope["method"] not in ("GET", "HEAD"):  # StaticFiles' own 405 names none
            raise HTTPException(405, headers={"Allow": "GET, HEAD"})
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        response.headers["Cache-Control"] = "no-cache"  # revalidate: a new release shows
        return response


def mount(app: FastAPI) -> None:
    """Add the dashboard to `app`: the page's routes and its static assets."""
    app.include_router(router)
    app.mount("/ui/static", _Static(directory=STATIC), name="ui-static")
