"""A study file as written: a base spec, a grid of overrides, named variants and seeds
(expanded into jobs by aimc_study.plan), and the comparisons (with claims) to draw from
their final metrics.

```yaml
name: async-vs-sequential
spec: ../digits_analog_sgd.yaml         # a spec file (relative to this file) or a mapping
grid: {pipeline.schedule: [sequential, async]}      # dotted overrides, every combination
variants:                               # optional: named override sets crossed with the grid
  - {name: digital, overrides: {analog.enabled: false, optimizer.algorithm: sgd}}
  - {name: analog, overrides: {}}
factors:                                # optional: more named axes of override sets
  bounds:                               # (value: the level's place on a trend's x axis)
    - {name: tau0.5, value: 0.5, overrides: {analog.device.w_min: -0.5, analog.device.w_max: 0.5}}
    - {name: tau1, value: 1.0, overrides: {}}
seeds: [1, 2, 3]                         # replicates: a group is one combination over seeds
quick: {overrides: {training.epochs: 1}, seeds: [1, 2]}   # what --quick runs instead
comparisons:
  - name: is async free?
    metric: test_accuracy                # the final value of a metric column
    tail: 1                              # the mean of the run's last `tail` metric points
    target: null                         # a number: compare the simulated time at which
                                         # the metric first reaches it instead
    where: {variant: analog}             # only these groups (optional)
    x: optimizer.lr                      # optional: a metric-vs-parameter figure
    claims:
      - {a: {pipeline.schedule: async}, b: {pipeline.schedule: sequential},
         expect: greater, margin: -0.01}  # async at most 0.01 below sequential
      - {kind: trend, x: optimizer.lr, log_x: true, expect: less}   # falls as lr grows
      - {kind: ratio, a: {pipeline.schedule: gpipe}, b: {pipeline.schedule: async},
         formula: (B + P - 1) / B, symbols: {B: pipeline.micro_batches, P: pipeline.stages},
         expect: equal, margin: 0.05}     # within 5% of the formula
```

Claim kinds (each judged by its confidence interval, statistics.verdict):
- difference: d = mean(a) - mean(b) (Welch's test, or paired by seed).
- trend: the least-squares slope of the metric (or, with a and b, of the per-seed gap a - b)
  against the factor x (its grid values, or its levels' `value`), or against ln x.
- ratio: the paired ratios a_i / b_i relative to a formula of the other factors' values:
  mean of (a_i / b_i) / formula - 1.
Each is drawn in every stratum: every combination of the factors the claim does not name.

A study with `parts:` is several studies in one file (one command, one report): each part
is a study of its own (its own spec, grid, factors and comparisons) that takes the file's
`spec`, `seeds` and `quick` where it gives none; its runs live in OUT/<part name>/.

A group's factors are its variant and named factors (when there are any) and its grid
values.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aimc_spec.metric_record import METRIC_COLUMNS
from aimc_spec.spec import _fail
from aimc_spec.sweep import DOTTED_PATH
from aimc_study.formula import formula_names
from aimc_study.statistics import Expect

MAX_STUDY_JOBS = 2000  # a study is for comparisons with seeds, not a hyper-parameter search
VARIANT = "variant"  # the factor naming a job's variant
RESERVED = ("seed", "name")  # set by the study itself: seeds from `seeds`, names per job
# final values a comparison can be drawn on: the metric columns that measure the run
METRICS = tuple(c for c in METRIC_COLUMNS if c not in ("step", "epoch", "lr"))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_paths(overrides: dict[str, Any]) -> dict[str, Any]:
    for path in overrides:
        if not DOTTED_PATH.match(path):
            raise ValueError(f"{path!r} is not a dotted spec path like pipeline.schedule")
        if path.split(".")[0] in RESERVED:
            raise ValueError(f"{path!r}: the study sets it (seeds come from `seeds`)")
    return overrides


NAME = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"  # a level's or a part's name: also a folder name
FACTOR_NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # no dots: a named factor is not a spec path
CLAIM_KINDS = ("difference", "trend", "ratio")


class Variant(_Strict):
    """A level of a named factor (a variant): its name and the overrides it applies."""

    name: str = Field(pattern=NAME, max_length=60)
    overrides: dict[str, Any] = Field(default_factory=dict, description="Dotted path -> value.")
    value: float | None = Field(
        None, description="Its place on an x axis, for trend and ratio claims over the factor."
    )

    _paths = field_validator("overrides")(_check_paths)


class Claim(_Strict):
    """A claim about the groups, judged by statistics.verdict within every stratum
    (combination of the factors the claim does not name); see the module's kinds."""

    kind: Literal["difference", "trend", "ratio"] = Field(
        "difference",
        description="difference: mean(a) - mean(b); trend: slope against x; ratio: "
        "a / b relative to a formula, minus 1",
    )
    a: dict[str, Any] = Field(
        default_factory=dict,
        description="Factor -> value: the groups on the left (trend: the groups it runs on).",
    )
    b: dict[str, Any] = Field(
        default_factory=dict,
        description="The same factors: the groups on the right (trend: of the gap a - b).",
    )
    x: str | None = Field(None, description="trend: the factor along which the slope runs.")
    log_x: bool = Field(False, description="trend: the slope against ln x.")
    formula: str | None = Field(None, description="ratio: the expected a / b, e.g. (B+P-1)/B.")
    symbols: dict[str, str] = Field(
        default_factory=dict, description="ratio: formula symbol -> the factor giving its value."
    )
    expect: Expect = Field("greater", description="greater: d > margin; less; equal: |d| < margin")
    margin: float = 0.0
    test: Literal["welch", "paired"] = Field(
        "welch", description="welch (unequal variances) or paired by seed"
    )
    text: str = Field("", description="The claim in words, for the report.")

    @field_validator("formula")
    @classmethod
    def _formula(cls, value: str | None) -> str | None:
        if value is not None:
            formula_names(value)
        return value

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> Claim:
        wrong = {
            "difference": ("x", "formula", "symbols"),
            "trend": ("formula", "symbols"),
            "ratio": ("x",),
        }[self.kind]
        for name in wrong:
            if name in self.model_fields_set:
                raise _fail(name, f"not a field of a {self.kind} claim")
        if self.kind == "trend" and self.x is None:
            raise _fail("x", "a trend claim needs the factor it runs along")
        if self.kind == "ratio":
            if self.formula is None:
                raise _fail("formula", "a ratio claim needs the expected ratio")
            if self.test != "paired" and "test" in self.model_fields_set:
                raise _fail("test", "a ratio claim pairs runs by seed (test: paired)")
            missing = [n for n in formula_names(self.formula) if n not in self.symbols]
            if missing:
                raise _fail("symbols", f"the formula's {missing} need a factor each")
        return self


class Comparison(_Strict):
    name: str = Field(min_length=1, max_length=120)
    metric: str = "test_accuracy"
    tail: int = Field(
        1,
        ge=1,
        le=1000,
        description="A run's value: the mean of its last `tail` metric points (1: the final).",
    )
    target: float | None = Field(
        None,
        description="Compare the time at which the metric first reaches this value (at "
        "least it; at most it for a loss) instead of the metric, on `clock`.",
    )
    clock: Literal["simulated", "wall", "energy"] = Field(
        "simulated",
        description="With a target: simulated, the AIMC latencies' clock (sim_time_ns); "
        "wall, seconds of the run on this machine (wall_s): what stage processes "
        "(pipeline.executor: processes) gain on a real clock; energy, the estimated pJ "
        "spent until then (energy_pj, docs/energy.md): energy to target.",
    )
    where: dict[str, Any] = Field(default_factory=dict, description="Only groups matching these.")
    x: str | None = Field(None, description="A grid key: the metric against its values.")
    claims: list[Claim] = Field(default_factory=list)

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"{value!r} is not a metric; allowed: {', '.join(METRICS)}")
        return value

    @model_validator(mode="after")
    def _target_or_tail(self) -> Comparison:
        if self.target is not None and self.tail != 1:
            raise _fail("tail", "a time-to-target comparison looks at every point, not a tail")
        if self.clock != "simulated" and self.target is None:
            raise _fail("clock", "a clock is read only to reach a target: set target")
        return self


class Quick(_Strict):
    overrides: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="Replaces grid values.")
    factors: dict[str, list[str]] = Field(
        default_factory=dict, description="Factor -> the names of the levels to keep."
    )
    seeds: list[int] | None = Field(None, min_length=1)

    _paths = field_validator("overrides")(_check_paths)


class StudyFile(_Strict):
    """The study file as written (or one of its parts)."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[^/\\]+$")
    description: str = ""
    spec: dict[str, Any] | str | None = Field(
        None, description="The base spec: a mapping or a file path (parts: the default)."
    )
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    variants: list[Variant] = Field(default_factory=list)
    factors: dict[str, list[Variant]] = Field(
        default_factory=dict, description="Factor name -> its levels, crossed with the grid."
    )
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    quick: Quick | None = None
    comparisons: list[Comparison] = Field(default_factory=list)
    parts: list[StudyFile] = Field(
        default_factory=list, description="Studies run and reported together (no nesting)."
    )

    @field_validator("factors")
    @classmethod
    def _factors(cls, factors: dict[str, list[Variant]]) -> dict[str, list[Variant]]:
        for name, levels in factors.items():
            if not FACTOR_NAME.match(name) or name == VARIANT:
                raise ValueError(
                    f"{name!r}: a factor's name is lower-case letters, digits and _ (and not "
                    f"{VARIANT!r}: that one is `variants`)"
                )
            if not levels:
                raise ValueError(f"{name}: needs a non-empty list of levels")
        return factors

    @model_validator(mode="after")
    def _study_or_parts(self) -> StudyFile:
        if not self.parts:
            return self  # its spec is checked where it is built (a part may inherit one)
        for field in ("grid", "variants", "factors", "comparisons"):
            if getattr(self, field):
                raise _fail(field, "a study with parts keeps it in each part")
        names = [p.name for p in self.parts]
        for i, part in enumerate(self.parts):
            if part.parts:
                raise _fail(f"parts.{i}.parts", "parts do not nest")
            if not re.match(NAME, part.name):
                raise _fail(
                    f"parts.{i}.name", f"{part.name!r}: a part's name is a folder name: {NAME}"
                )
            if names.count(part.name) > 1:
                raise _fail("parts", f"names must be distinct, got {names}")
            if part.spec is None and self.spec is None:
                raise _fail(f"parts.{i}.spec", "no base spec here nor at the top")
        return self

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        _check_paths(grid)
        for path, values in grid.items():
            if not values:
                raise ValueError(f"{path}: needs a non-empty list of values")
        return grid

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise ValueError(f"{seeds}: distinct non-negative integers")
        return seeds


def named_factors(file: StudyFile) -> list[tuple[str, str, list[Variant]]]:
    """The named factors as (factor, where in the file, levels): variants first."""
    found = [(VARIANT, "variants", file.variants)] if file.variants else []
    return found + [(name, f"factors.{name}", levels) for name, levels in file.factors.items()]
