"""Messages between neighbouring stage processes, over torch.distributed point-to-point.

Every message is a fixed-size header (int64) followed, for data, by its payload:

    DATA    [0, dtype, ndim, d0, d1, d2, d3, d4]   then the tensor
    OBJECT  [1, nbytes, 0, ...]                    then the pickled bytes (uint8)
    STOP    [2, reason, microbatch, detail, ...]   nothing follows

so a receiver never has to know in advance what comes next, and a stage that stops
can tell its neighbours so whatever they are waiting for. A `Link` is one direction-
less channel to one neighbour on one process group; a stage has a training link and a
metric link per neighbour, each on its own group (NCCL ignores tags, so two groups keep
the two message streams in their own order). Sends are non-blocking (`isend`): a
stage goes on computing while its activation or gradient travels; receives block,
with the process group's timeout.

Stopping (`drain`): a stage that stops (cancel, divergence, an error) sends STOP on
every link it has not sent one on, then receives on every link until the neighbour's
STOP arrives, dropping what comes before it. A neighbour that receives a STOP does the
same. Every message sent is then received, so no send is left pending, and every
stage walks out of its loop without waiting for actions that will never run.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from aimc_engine.errors import RunError

DATA, OBJECT, STOP = 0, 1, 2
HEADER = 8
MAX_DIMS = HEADER - 3
_DTYPES = (torch.float32, torch.float64, torch.int64, torch.uint8, torch.float16, torch.bfloat16)

# why a stage stopped (STOP's reason); a lower number wins when several arrive
FAILED, DIVERGED, CANCELLED = 1, 2, 3
NONFINITE = {0: float("nan"), 1: float("inf"), 2: float("-inf")}


class LostPeer(RunError):
    """A neighbour's process died, hangs past the timeout, or cannot be reached: nothing
    can be drained through it, so the run fails at once."""


class Stopped(Exception):
    """A STOP arrived (or this stage decided to stop): the run ends here."""

    def __init__(self, reason: int, microbatch: int = -1, detail: int = 0) -> None:
        super().__init__(reason, microbatch, detail)
        self.reason, self.microbatch, self.detail = reason, microbatch, detail


@dataclass
class Traffic:
    """What a stage's links measured: seconds blocked waiting for a message, seconds
    spent posting sends, messages sent."""

    wait_s: float = 0.0
    send_s: float = 0.0
    sent: int = 0


@dataclass
class Link:
    """Messages to and from stage `peer` (its rank) on process group `group`."""

    peer: int
    group: dist.ProcessGroup | None
    device: torch.device
    traffic: Traffic
    sent_stop: bool = False
    got_stop: bool = False
    _pending: list[tuple[dist.Work, Tensor]] = field(default_factory=list)

    def _isend(self, tensor: Tensor) -> None:
        start = time.perf_counter()
        try:
            work = dist.isend(tensor, self.peer, group=self.group)
            if work is not None:
                self._pending.append((work, tensor))  # the tensor lives until it is sent
            while self._pending and self._pending[0][0].is_completed():
                self._pending.pop(0)[0].wait()
        except RuntimeError as exc:
            raise self._lost(exc) from None
        self.traffic.send_s += time.perf_counter() - start
        self.traffic.sent += 1

    def _recv(self, tensor: Tensor) -> Tensor:
        start = time.perf_counter()
        try:
            dist.recv(tensor, self.peer, group=self.group)
        except RuntimeError as exc:  # a closed connection, or the group's timeout
            raise self._lost(exc) from None
        self.traffic.wait_s += time.perf_counter() - start
        return tensor

    def _lost(self, exc: RuntimeError) -> LostPeer:
        """A failed send or receive: the peer's process died, hangs or cannot be reached."""
        return LostPeer(
            f"stage {self.peer}: lost its process ({_reason(exc)}); it died, hangs past "
            "pipeline.timeout_s, or cannot be reached"
        )

    def _header(self, *values: int) -> Tensor:
        header = torch.zeros(HEADER, dtype=torch.int64)
        header[: len(values)] = torch.tensor(values, dtype=torch.int64)
        return header.to(self.device)

    def send(self, tensor: Tensor) -> None:
        """Send a tensor (of at most MAX_DIMS dimensions)."""
        if tensor.dim() > MAX_DIMS:
            raise ValueError(f"a message holds at most {MAX_DIMS} dimensions, not {tensor.dim()}")
        data = tensor.detach().contiguous()
        self._isend(self._header(DATA, _DTYPES.index(data.dtype), data.dim(), *data.shape))
        self._isend(data)

    def send_object(self, obj: Any) -> None:
        """Send a picklable object (a stage's report, its final state)."""
        raw = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        self._isend(self._header(OBJECT, len(raw)))
        self._isend(torch.frombuffer(bytearray(raw), dtype=torch.uint8).to(self.device))

    def send_stop(self, reason: int, microbatch: int = -1, detail: int = 0) -> None:
        if not self.sent_stop:
            self._isend(self._header(STOP, reason, microbatch, detail))
            self.sent_stop = True

    def receive(self) -> Tensor | Any:
        """The next message: a tensor, or an object. Raises Stopped on a STOP."""
        header = self._recv(torch.empty(HEADER, dtype=torch.int64, device=self.device)).tolist()
        kind = header[0]
        if kind == DATA:
            ndim = header[2]
            shape = header[3 : 3 + ndim]
            return self._recv(torch.empty(shape, dtype=_DTYPES[header[1]], device=self.device))
        if kind == OBJECT:
            raw = self._recv(torch.empty(header[1], dtype=torch.uint8, device=self.device))
            return pickle.loads(raw.cpu().numpy().tobytes())
        self.got_stop = True
        raise Stopped(header[1], header[2], header[3])

    def tensor(self) -> Tensor:
        """The next message, which must be a tensor."""
        message = self.receive()
        if not isinstance(message, Tensor):
            raise RunError(f"stage {self.peer} sent {type(message).__name__}, not a tensor")
        return message

    def obj(self) -> Any:
        """The next message, which must be an object."""
        message = self.receive()
        if isinstance(message, Tensor):
            raise RunError(f"stage {self.peer} sent a tensor, not an object")
        return message

    def flush(self) -> None:
        """Wait until every send has been received."""
        try:
            for work, _ in self._pending:
                work.wait()
        except RuntimeError as exc:
            raise self._lost(exc) from None
        self._pending.clear()


def drain(links: list[Link], stop: Stopped) -> Stopped:
    """Stop on every link (see the module's docstring); returns the most telling reason
    seen (an error before a divergence before a cancel)."""
    for link in links:
        link.send_stop(stop.reason, stop.microbatch, stop.detail)
    seen = stop
    for link in links:
        while not link.got_stop:
            try:
                link.receive()
            except Stopped as other:
                if other.reason < seen.reason:
                    seen = other
    for link in links:
        link.flush()
    return seen


def _reason(exc: BaseException) -> str:
    """The first line of a torch.distributed error, without its C++ source location."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split(" Exception raised from ")[0][:200]
