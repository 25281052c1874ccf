"""The job spec: the public contract of a simulation job (see docs job-spec.md).

Torch-free on purpose: the API process validates specs with this module and
must stay light. Parse at the edge with :func:`parse_spec`; inside the engine,
functions take the typed :class:`JobSpec`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from aimc_spec.agad_spec import AGADSpec
from aimc_spec.analog_spec import AnalogSpec, IOSpec
from aimc_spec.chopped_ttv2_spec import ChoppedTTv2Spec, ChopperSpec
from aimc_spec.configs import closest_configs, expand, find_config
from aimc_spec.dataset_spec import DATASET_ROOTS, DatasetSpec
from aimc_spec.devices import DEVICE_MODELS, DeviceSpec, ExpStepSpec, PresetName, parse_device
from aimc_spec.hardware_spec import HardwareSpec
from aimc_spec.mixed_precision_spec import MixedPrecisionSpec
from aimc_spec.pipeline_spec import (
    UPDATE_NS,
    CompensationSpec,
    LatencySpec,
    PipelineSpec,
    TorchDevice,
)
from aimc_spec.residual_learning_spec import ResidualLearningSpec
from aimc_spec.spec_base import SpecError, _fail, _Strict
from aimc_spec.suggest import locate, unknown_field
from aimc_spec.tiki_taka_spec import TikiTakaSpec
from aimc_spec.ttv2_spec import TTv2Spec

# the parts of the spec live in modules of their own; callers import them from here
__all__ = [
    "DATASET_ROOTS",
    "DEVICE_MODELS",
    "UPDATE_NS",
    "AGADSpec",
    "AlgorithmName",
    "AnalogSpec",
    "ChoppedTTv2Spec",
    "ChopperSpec",
    "CompensationSpec",
    "DatasetSpec",
    "DeviceSpec",
    "ExpStepSpec",
    "HardwareSpec",
    "IOSpec",
    "JobSpec",
    "LatencySpec",
    "MixedPrecisionSpec",
    "ModelSpec",
    "OptimizerSpec",
    "PipelineSpec",
    "PresetName",
    "ResidualLearningSpec",
    "SpecError",
    "TTv2Spec",
    "TikiTakaSpec",
    "TorchDevice",
    "TrainingSpec",
    "load_spec_file",
    "parse_device",
    "parse_spec",
    "read_spec_data",
    "read_spec_file",
    "spec_problems",
]


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


class LrDecaySpec(_Strict):
    every_epochs: float = Field(gt=0, description="Multiply lr by factor every this many epochs.")
    factor: float = Field(gt=0, le=1, description="Decay factor.")


AlgorithmName = Literal[
    "sgd",
    "analog_sgd",
    "tiki_taka",
    "ttv2",
    "chopped_ttv2",
    "agad",
    "mixed_precision",
    "residual_learning",
]


class OptimizerSpec(_Strict):
    algorithm: AlgorithmName = Field(
        "analog_sgd",
        description="sgd: exact floating-point update; analog ones use devices: analog_sgd "
        "writes every update, tiki_taka through a fast array P, ttv2 as tiki_taka with a "
        "digital buffer between P and W, chopped_ttv2 as ttv2 with choppers, agad as "
        "chopped_ttv2 with a dynamic reference, mixed_precision "
        "through a digital accumulator chi, residual_learning through an array P learning "
        "the residual (arXiv 2502.06309).",
    )
    lr: float = Field(0.1, gt=0, le=1e3, description="Learning rate.")
    lr_decay: LrDecaySpec | None = Field(None, description="Step decay of the learning rate.")
    tiki_taka: TikiTakaSpec = Field(default_factory=TikiTakaSpec)  # type: ignore[arg-type]
    ttv2: TTv2Spec = Field(default_factory=TTv2Spec)  # type: ignore[arg-type]
    chopped_ttv2: ChoppedTTv2Spec = Field(default_factory=ChoppedTTv2Spec)  # type: ignore[arg-type]
    agad: AGADSpec = Field(default_factory=AGADSpec)  # type: ignore[arg-type]
    residual_learning: ResidualLearningSpec = Field(default_factory=ResidualLearningSpec)  # type: ignore[arg-type]
    mixed_precision: MixedPrecisionSpec = Field(default_factory=MixedPrecisionSpec)  # type: ignore[arg-type]


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
    hardware: HardwareSpec = Field(
        default_factory=HardwareSpec,  # type: ignore[arg-type]
        description="What each operation costs, for the run's energy estimate (docs/energy.md).",
    )

    @model_validator(mode="before")
    @classmethod
    def _configuration(cls, data: Any) -> Any:
        """`analog.config` laid under the spec as written (aimc_spec/configs.py), its
        name normalised to aihwkit's class name."""
        analog = data.get("analog") if isinstance(data, dict) else None
        name = analog.get("config") if isinstance(analog, dict) else None
        if name is None:
            return data
        config = find_config(name) if isinstance(name, str) else None
        if config is None:
            near = closest_configs(str(name))
            hint = f"did you mean {' or '.join(map(repr, near))}? " if near else ""
            raise _fail(
                "analog.config",
                f"no configuration {name!r}; {hint}GET /v1/configs or `aimc configs` lists all 52",
            )
        data = expand(data, config)
        data["analog"]["config"] = config.name
        return data

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
        cell_algorithms = ("analog_sgd", "mixed_precision")
        if self.analog.unit_cell is not None and self.optimizer.algorithm not in cell_algorithms:
            raise _fail(
                "analog.unit_cell",
                f"unit cells train with optimizer.algorithm 'analog_sgd' or "
                f"'mixed_precision', not {self.optimizer.algorithm!r}",
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
    """Turn pydantic's error dicts (ValidationError.errors()) into (dotted path, message)
    with the paths as written (without the device family's tag pydantic adds); an
    unknown field's message offers the closest field of `model` (default JobSpec), or
    names the family a device's field belongs to and the fields its own family takes."""
    root = model or JobSpec
    problems = []
    for err in errors:
        # pydantic marks a refused dict key (a sweep's grid key) with a "[key]" step
        loc = [str(p) for p in err["loc"] if p != "[key]"]
        msg = err["msg"]
        ctx = err.get("ctx") or {}
        if err["type"] == "extra_forbidden":
            loc, msg = unknown_field(root, loc)
        else:
            loc = locate(root, loc).path
        if err["type"] == "spec":
            loc.append(ctx["path"])
            msg = ctx["message"]
        elif err["type"] == "union_tag_invalid":  # a device model no family has
            loc.append(ctx["discriminator"].strip("'"))
            msg = f"got {ctx['tag']!r}; allowed: {ctx['expected_tags']}"
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
