"""The checks of uploaded .npz archives, run in processes of their own.

Unpacking and checking an archive is seconds of CPU in numpy and zlib (five uploads
that unpack to 186 MiB each held /healthz 2.6 s when checked on the event loop). In a
thread the event loop still shared the interpreter's lock with them: /healthz waited
up to 0.3 s on a busy machine. In a process of its own a check takes nothing from the
API's process but the copy of its bytes, and `workers` of them bound the memory the
unpacked arrays take at once (further uploads wait their turn in the pool's queue).
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from aimc_spec.dataset_files import DatasetError, checked_info


class UploadChecks:
    """A pool of `workers` processes, started by spawning (the API's process has
    threads: forking it could copy a held lock) and only when the first upload comes."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn")
        )

    async def check(self, data: bytes, max_unpacked: int) -> dict[str, Any]:
        """The upload's description (aimc_spec.dataset_files.describe); DatasetError
        naming what is wrong with it."""
        try:
            return await asyncio.wrap_future(self._pool.submit(checked_info, data, max_unpacked))
        except BrokenProcessPool:
            # a check's process died (the kernel's OOM killer): the next ones get a new pool
            self._pool = self._new_pool()
            raise DatasetError(
                "upload: the process checking it died (out of memory?); send a smaller archive"
            ) from None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
