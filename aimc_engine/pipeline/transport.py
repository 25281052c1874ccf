"""Messages between neighbouring stage processes, over torch.distributed point-to-point.

Every message is a fixed-size header (int64) followed, for data, by its payload:

    DATA    [0, dtype, ndim, d0, d1, d2, d3, d4]   then the tensor
    OBJECT  [1, nbytes, 0, ...]                    then the pickled bytes (uint8)
    STOP    [2, reason, microbatch, detail, ...]   nothing follows

so a receiver never has to know in advance what comes next, and a stage that stops
can tell its neighbours so whatever they are waiting for. A `Link` is one direction-
less channel to one neighbour on one process group; a stage has a training link and a
metric link per neighbour, each on its own group (NCCL ignores tags, so two groups keep
the two message streams in their own order). Training links (`StreamLink`) send one
tensor per message once the shape is known, and receive the next message ahead. Sends
are non-blocking (`isend`): a stage goes on computing while its activation or gradient
travels; receives block, with the process groups' timeout (pipeline.timeout_s).

Stopping (`drain`): a stage that stops (cancel, divergence, an error) sends STOP on
every link it has not sent one on, then receives on every link until the neighbour's
STOP arrives, dropping what comes before it. A neighbour that receives a STOP does the
same. Every message sent is then received, so no send is left pending, and every
stage walks out of its loop without waiting for actions that will never run.
"""

from __future__ import annotations

import math
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
            f"stage {self.peer}: lost its process ({_reason(exc)}): it died, cannot be "
            "reached, or sent nothing for pipeline.timeout_s (raise it if stages are that "
            "slow)"
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
        if kind != STOP:
            raise LostPeer(f"stage {self.peer}: sent a message of unknown kind {kind}")
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


PACKED_HEADER = 4  # kind, reason, micro-batch, detail: int32s riding as float32 bits


@dataclass
class StreamLink(Link):
    """A training link: activations one way, gradients the other, all of one shape. The
    first message each way goes header first and tells the shape; every later one is a
    single float32 tensor [4 header slots | data], and the next is received ahead: its
    receive is posted as soon as the one before arrives, so it travels while the stage
    computes. `expected` counts the messages still to come in a run that is not stopped
    (no receive is posted past the last)."""

    expected: int = 0
    _out: tuple[tuple[int, ...], torch.dtype] | None = None
    _in: tuple[tuple[int, ...], torch.dtype] | None = None
    _ahead: tuple[dist.Work, Tensor] | None = None

    def send(self, tensor: Tensor) -> None:
        data = tensor.detach()
        if self._out is None or self._out[1] != torch.float32:
            super().send(data)
            self._out = (tuple(data.shape), data.dtype)
            return
        if (tuple(data.shape), data.dtype) != self._out:
            raise RunError(
                f"stage {self.peer}: a message of shape {tuple(data.shape)} after "
                f"{self._out[0]} on a training link"
            )
        self._isend(self._packed(DATA, 0, 0, 0, data))

    def _packed(self, kind: int, reason: int, j: int, detail: int, data: Tensor | None) -> Tensor:
        head = torch.tensor([kind, reason, j, detail], dtype=torch.int32).view(torch.float32)
        assert self._out is not None
        body = torch.zeros(math.prod(self._out[0])) if data is None else data.reshape(-1)
        return torch.cat([head.to(self.device), body.to(self.device, torch.float32)])

    def send_stop(self, reason: int, microbatch: int = -1, detail: int = 0) -> None:
        if self.sent_stop:
            return
        if self._out is None or self._out[1] != torch.float32:
            super().send_stop(reason, microbatch, detail)
            return
        self._isend(self._packed(STOP, reason, microbatch, detail, None))
        self.sent_stop = True

    def receive(self) -> Tensor | Any:
        if self._in is None or self._in[1] != torch.float32:
            message = super().receive()
            self.expected -= 1
            if isinstance(message, Tensor):
                self._in = (tuple(message.shape), message.dtype)
                self._receive_ahead()
            return message
        if self._ahead is None:
            buffer = self._recv(self._buffer())
        else:
            work, buffer = self._ahead
            self._ahead = None
            start = time.perf_counter()
            try:
                work.wait()
            except RuntimeError as exc:
                raise self._lost(exc) from None
            self.traffic.wait_s += time.perf_counter() - start
        self.expected -= 1
        kind, reason, j, detail = buffer[:PACKED_HEADER].view(torch.int32).tolist()
        if kind not in (DATA, STOP):
            raise LostPeer(f"stage {self.peer}: sent a message of unknown kind {kind}")
        if kind == STOP:
            self.got_stop = True
            raise Stopped(reason, j, detail)
        self._receive_ahead()
        return buffer[PACKED_HEADER:].view(self._in[0])

    def _buffer(self) -> Tensor:
        assert self._in is not None
        return torch.empty(PACKED_HEADER + math.prod(self._in[0]), device=self.device)

    def _receive_ahead(self) -> None:
        """Post the receive of the next message, if one is still to come."""
        if self.expected > 0 and self._in is not None and self._in[1] == torch.float32:
            buffer = self._buffer()
            try:
                work = dist.irecv(buffer, self.peer, group=self.group)
            except RuntimeError as exc:
                raise self._lost(exc) from None
            assert work is not None  # a receive of this process's always has its Work
            self._ahead = (work, buffer)


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
