"""/healthz and /readyz: liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])
WORKER_PING_TIMEOUT_S = 1.0  # a worker slower than this to answer counts as absent


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready"}})
def readyz(request: Request) -> JSONResponse:
    """Readiness: Redis answers and at least one worker answers a ping."""
    checks = {"redis": False, "worker": False}
    try:
        checks["redis"] = bool(request.app.state.store.r.ping())
        replies = request.app.state.celery.control.ping(timeout=WORKER_PING_TIMEOUT_S)
        checks["worker"] = bool(replies)
    except Exception:  # an unreachable broker is exactly what this reports
        pass
    return JSONResponse(checks, status_code=200 if all(checks.values()) else 503)
