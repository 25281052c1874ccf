"""A handle on one job, for notebooks and scripts: `client.job(id)` gives its id and the
calls that take it, so a cell reads `job.wait()` then `job.metrics(frame=True)`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from aimc_client.frames import metrics_frame
from aimc_client.progress import job_bar

if TYPE_CHECKING:
    import pandas as pd

    from aimc_client.client import Client


@dataclass(frozen=True)
class Job:
    """One job of `client`'s user, by id. Every call asks the service afresh."""

    client: Client
    id: str

    def info(self) -> dict[str, Any]:
        """State, progress (0..1), ETA, latest metric point, error."""
        return self.client.get(self.id)

    @property
    def state(self) -> str:
        return str(self.info()["state"])

    @overload
    def metrics(
        self, *, since: int = -1, frame: Literal[False] = False
    ) -> list[dict[str, Any]]: ...

    @overload
    def metrics(self, *, since: int = -1, frame: Literal[True]) -> pd.DataFrame: ...

    def metrics(
        self, *, since: int = -1, frame: bool = False
    ) -> list[dict[str, Any]] | pd.DataFrame:
        """Metric points with step > since (exclusive); with frame=True a pandas DataFrame
        in the columns of metrics.csv (ImportError naming `pip install pandas` without it)."""
        points = self.client.metrics(self.id, since=since)
        return metrics_frame(points) if frame else points

    def wait(
        self, *, progress: bool = True, poll_s: float = 1.0, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """Poll until the job ends, showing its progress (an HTML bar in a notebook, a text
        bar on stderr elsewhere) unless progress=False; the final job."""
        bar = job_bar() if progress else None
        return self.client.wait(self.id, on_progress=bar, poll_s=poll_s, timeout_s=timeout_s)

    def cancel(self) -> dict[str, Any]:
        return self.client.cancel(self.id)

    def result(self) -> dict[str, Any]:
        """result.json of the finished job (ConflictError before it ends)."""
        return self.client.result(self.id)

    def download(self, out_dir: str | Path, names: list[str] | None = None) -> list[Path]:
        return self.client.download(self.id, out_dir, names)
