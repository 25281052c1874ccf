"""The pipeline part of the job spec: stages, schedule, micro-batches, the timeline's
latencies, staleness compensation, and where the stages run (pipeline.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from aimc_spec.spec_base import _fail, _Strict
from aimc_spec.vocabulary import ASYNCHRONOUS, SYNCHRONOUS, ScheduleName

# The latency table these come from has no row for the newer algorithms: mixed_precision
# (one device write per update, after a digital outer product) is taken as Analog SGD,
# the Tiki-Taka family and residual_learning (two arrays written per update) as Tiki-Taka.
UPDATE_NS = {
    "analog_sgd": 165.9,
    "sgd": 165.9,
    "tiki_taka": 371.8,
    "ttv2": 371.8,
    "chopped_ttv2": 371.8,
    "agad": 371.8,
    "mixed_precision": 165.9,
    "residual_learning": 371.8,
}


class LatencySpec(_Strict):
    forward: float = Field(40.0, ge=0, description="ns per layer per sample, forward MVM.")
    backward: float = Field(40.0, ge=0, description="ns per layer per sample, backward MVM.")
    update: float | None = Field(
        None,
        ge=0,
        description="ns per layer per sample, weight update; default by algorithm: 165.9 "
        "(Analog SGD's rank-one update; also mixed_precision), 371.8 for tiki_taka, ttv2, "
        "chopped_ttv2, agad and residual_learning.",
    )


TorchDevice = Annotated[
    str,
    StringConstraints(pattern=r"^(cpu|cuda(:[0-9]{1,2})?)$"),
    Field(description="cpu, cuda or cuda:N"),
]


class CompensationSpec(_Strict):
    """Staleness compensation for the asynchronous schedules, with no weight copies on the
    tiles (aimc_engine/pipeline/compensation.py has the formulas and their sources)."""

    mode: Literal["none", "lr_scale", "accumulate"] = Field(
        "none",
        description="none: Analog-SGD-AP as the paper runs it. lr_scale: PipeMare's "
        "learning-rate rescheduling, stage s steps at lr * (d_s + 1)^(-p_k), p_k = p * (1 - "
        "min(k / warmup, 1)) after k updates. accumulate: each stage sums the gradients of k "
        "micro-batches digitally and writes them to its tiles in one update (at lr), so a "
        "forward lags at most ceil(d_s / k) device updates. Only for the async schedules.",
    )
    p: float = Field(
        1.0, ge=0, le=8, description="lr_scale: the exponent at the start (PipeMare: 1)."
    )
    warmup: int = Field(
        1000,
        ge=1,
        le=10**9,
        description="lr_scale: updates over which the exponent anneals linearly from p to 0 "
        "(PipeMare's K); afterwards every stage steps at lr.",
    )
    k: int = Field(
        2, ge=1, le=4096, description="accumulate: micro-batches per device update of a stage."
    )

    @model_validator(mode="after")
    def _own_fields(self) -> CompensationSpec:
        """A parameter set away from its default under another mode is a mistake (the
        defaults are allowed: a normalised spec carries every field)."""
        owner = {"p": "lr_scale", "warmup": "lr_scale", "k": "accumulate"}
        for name, mode in owner.items():
            default = type(self).model_fields[name].default
            if mode != self.mode and getattr(self, name) != default:
                raise _fail(name, f"is a parameter of mode {mode!r}; this mode is {self.mode!r}")
        return self


class PipelineSpec(_Strict):
    stages: int = Field(1, ge=1, le=256, description="P; 1 = no pipeline.")
    schedule: ScheduleName = Field("sequential", description="Pipeline schedule.")
    micro_batches: int = Field(5, ge=1, le=4096, description="B: micro-batches per mini-batch.")
    latency_ns: LatencySpec = Field(default_factory=LatencySpec)  # type: ignore[arg-type]
    compensation: CompensationSpec = Field(default_factory=CompensationSpec)  # type: ignore[arg-type]
    executor: Literal["simulated", "processes"] = Field(
        "simulated",
        description="simulated: every stage in one process, in the timeline's order. "
        "processes: one OS process per stage (torch.distributed: gloo on CPU, NCCL on CUDA), "
        "the same numbers bit for bit on CPU.",
    )
    devices: list[TorchDevice] | None = Field(
        None,
        description="processes only: the torch device of each stage, e.g. [cpu, cpu] or "
        "[cuda:0, cuda:1]; all CPU (gloo) or all CUDA (NCCL). Default: one GPU per stage "
        "where there are enough and `device` allows, else CPU.",
    )
    port: int | None = Field(
        None,
        ge=1024,
        le=65535,
        description="processes only: the TCP port stage 0 listens on for the others "
        "(loopback); default: a free one.",
    )
    timeout_s: float = Field(
        60.0,
        ge=5,
        le=3600,
        description="processes only: how long a stage waits for a neighbour's message before "
        "the job fails naming the stage it waited for.",
    )

    @model_validator(mode="after")
    def _placement(self) -> PipelineSpec:
        if self.executor == "simulated":
            for name in ("devices", "port"):
                if getattr(self, name) is not None:
                    raise _fail(name, "only with executor: processes (one process per stage)")
            return self
        if self.devices is not None:
            if len(self.devices) != self.stages:
                raise _fail(
                    "devices",
                    f"{len(self.devices)} devices for {self.stages} stages; give one device "
                    "per stage (cpu may repeat; on one host a GPU serves one stage)",
                )
            kinds = {d.split(":")[0] for d in self.devices}
            if len(kinds) > 1:
                raise _fail(
                    "devices",
                    "mixes cpu and cuda; all stages on cpu (gloo) or all on cuda (NCCL)",
                )
        return self

    @model_validator(mode="after")
    def _stale_schedule(self) -> PipelineSpec:
        if self.compensation.mode != "none" and self.schedule not in ASYNCHRONOUS:
            raise _fail(
                "compensation.mode",
                f"{self.compensation.mode!r} compensates the stale weights of the async "
                f"schedules ({', '.join(ASYNCHRONOUS)}); schedule {self.schedule!r} has none: "
                "use mode 'none'",
            )
        return self

    @property
    def group(self) -> int:
        """Micro-batches per update: B for the synchronous schedules, else 1."""
        return self.micro_batches if self.schedule in SYNCHRONOUS else 1
