"""A study: a base spec, a grid of overrides, named variants and seeds, expanded into jobs,
and the comparisons (with claims) to draw from their final metrics.

```yaml
name: async-vs-sequential
spec: ../digits_analog_sgd.yaml         # a spec file (relative to this file) or a mapping
grid: {pipeline.schedule: [sequential, async]}      # dotted overrides, every combination
variants:                               # optional: named override sets crossed with the grid
  - {name: digital, overrides: {analog.enabled: false, optimizer.algorithm: sgd}}
  - {name: analog, overrides: {}}
seeds: [1, 2, 3]                         # replicates: a group is one combination over seeds
quick: {overrides: {training.epochs: 1}, seeds: [1, 2]}   # what --quick runs instead
comparisons:
  - name: is async free?
    metric: test_accuracy                # the final value of a metric column
    where: {variant: analog}             # only these groups (optional)
    x: optimizer.lr                      # optional: a metric-vs-parameter figure
    claims:
      - {a: {pipeline.schedule: async}, b: {pipeline.schedule: sequential},
         expect: greater, margin: -0.01}  # async at most 0.01 below sequential
```

A group's factors are its variant (when there are variants) and its grid values. Every job
spec is validated when the study is read, so a study runs whole or not at all. Torch-free:
the CLI expands studies both to run them locally and to send them as sweeps.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aimc_spec.metric_record import METRIC_COLUMNS
from aimc_spec.spec import JobSpec, SpecError, parse_spec, read_spec_data, spec_problems
from aimc_spec.statistics import Expect
from aimc_spec.sweep import DOTTED_PATH, set_path

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


class Variant(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$", max_length=60)
    overrides: dict[str, Any] = Field(default_factory=dict, description="Dotted path -> value.")

    _paths = field_validator("overrides")(_check_paths)


class Claim(_Strict):
    """d = mean(a) - mean(b) of the groups each selector picks, judged by statistics.verdict
    within every combination of the factors neither selector names."""

    a: dict[str, Any] = Field(description="Factor -> value: the groups on the left.")
    b: dict[str, Any] = Field(description="The same factors: the groups on the right.")
    expect: Expect = Field("greater", description="greater: d > margin; less; equal: |d| < margin")
    margin: float = 0.0
    test: Literal["welch", "paired"] = Field(
        "welch", description="welch (unequal variances) or paired by seed"
    )
    text: str = Field("", description="The claim in words, for the report.")


class Comparison(_Strict):
    name: str = Field(min_length=1, max_length=120)
    metric: str = "test_accuracy"
    where: dict[str, Any] = Field(default_factory=dict, description="Only groups matching these.")
    x: str | None = Field(None, description="A grid key: the metric against its values.")
    claims: list[Claim] = Field(default_factory=list)

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"{value!r} is not a metric; allowed: {', '.join(METRICS)}")
        return value


class Quick(_Strict):
    overrides: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="Replaces grid values.")
    seeds: list[int] | None = Field(None, min_length=1)

    _paths = field_validator("overrides")(_check_paths)


class StudyFile(_Strict):
    """The study file as written."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[^/\\]+$")
    description: str = ""
    spec: dict[str, Any] | str = Field(description="The base spec: a mapping or a file path.")
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    variants: list[Variant] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    quick: Quick | None = None
    comparisons: list[Comparison] = Field(default_factory=list)

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


@dataclass(frozen=True)
class StudyJob:
    """One run: its group, seed, folder name and the spec (raw mapping and validated)."""

    label: str  # its folder under runs/, unique in the study
    group: str  # the group's label (factors without the seed)
    factors: dict[str, Any]
    seed: int
    spec: JobSpec


@dataclass(frozen=True)
class Group:
    label: str
    factors: dict[str, Any]
    jobs: tuple[StudyJob, ...]


@dataclass(frozen=True)
class SweepPart:
    """Jobs of one variant as one service sweep: base (variant and quick applied) + grid."""

    variant: str | None
    base: dict[str, Any]
    grid: dict[str, list[Any]]


@dataclass(frozen=True)
class Study:
    file: StudyFile
    source: str  # where the base spec came from (a path, or "inline")
    quick: bool
    grid: dict[str, list[Any]]  # quick's values applied
    seeds: list[int]
    keys: list[str]  # the factors: "variant" (if any) then the grid keys
    groups: list[Group]
    jobs: list[StudyJob]
    parts: list[SweepPart]

    @property
    def name(self) -> str:
        return self.file.name

    def matching(self, selector: dict[str, Any]) -> list[Group]:
        return [g for g in self.groups if all(g.factors.get(k) == v for k, v in selector.items())]


def display_names(keys: list[str]) -> dict[str, str]:
    """Each factor by its last path segment, unless two keys share it (then in full)."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 else k for k, s in zip(keys, last, strict=True)}


def group_label(factors: dict[str, Any], names: dict[str, str]) -> str:
    parts = [str(v) if k == VARIANT else f"{names[k]}={v}" for k, v in factors.items()]
    return ", ".join(parts) or "base"


def folder_name(group: str, seed: int) -> str:
    """A file-system-safe form of a job's label ('schedule=async, seed=1')."""
    text = f"{group}, seed={seed}".replace(", ", "_")
    return re.sub(r"[^A-Za-z0-9._=+-]+", "-", text).strip("-")


def _attribute(loc: str, sources: list[tuple[str, dict[str, Any]]]) -> str:
    """The study field an invalid spec field comes from: the override that set it, else
    the base spec."""
    for where, overrides in sources:
        for key in overrides:
            if loc == key or loc.startswith(key + "."):
                return f"{where}.{key}"
    return f"spec.{loc}" if loc else "spec"


def _base(file: StudyFile, base_dir: Path) -> tuple[dict[str, Any], str]:
    if isinstance(file.spec, dict):
        return file.spec, "inline"
    path = (base_dir / file.spec).resolve() if not Path(file.spec).is_absolute() else file.spec
    try:
        data = read_spec_data(path)
    except SpecError as exc:
        raise SpecError([("spec", msg) for _, msg in exc.problems]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError([("spec", f"{file.spec}: a job spec must be a mapping")])
    return data, str(file.spec)


def _overlaps(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """A key of `a` that is, contains or lies under a key of `b`."""
    for x in a:
        for y in b:
            if x == y or x.startswith(y + ".") or y.startswith(x + "."):
                return x
    return None


def _check_design(file: StudyFile, grid: dict[str, list[Any]]) -> None:
    problems = []
    quick = file.quick or Quick()
    for key in quick.grid:
        if key not in file.grid:
            problems.append((f"quick.grid.{key}", "not a grid key; quick.grid only shrinks it"))
    if (clash := _overlaps(quick.overrides, grid)) is not None:
        problems.append((f"quick.overrides.{clash}", "is a grid key; shrink it with quick.grid"))
    for i, variant in enumerate(file.variants):
        if (clash := _overlaps(variant.overrides, grid)) is not None:
            problems.append((f"variants.{i}.overrides.{clash}", "is also a grid key"))
    names = [v.name for v in file.variants]
    if len(set(names)) != len(names):
        problems.append(("variants", f"names must be distinct, got {names}"))
    if problems:
        raise SpecError(problems)


def _check_comparisons(file: StudyFile, keys: list[str]) -> None:
    values = {**file.grid, VARIANT: [v.name for v in file.variants]}
    problems = []

    def check(where: str, selector: dict[str, Any]) -> None:
        for key, value in selector.items():
            if key not in keys:
                problems.append((f"{where}.{key}", f"not a factor; allowed: {', '.join(keys)}"))
            elif value not in values[key]:
                problems.append((f"{where}.{key}", f"{value!r} is not one of {values[key]}"))

    for i, comp in enumerate(file.comparisons):
        at = f"comparisons.{i}"
        check(f"{at}.where", comp.where)
        if comp.x is not None and comp.x not in file.grid:
            problems.append(
                (f"{at}.x", f"{comp.x!r} is not a grid key; allowed: {list(file.grid)}")
            )
        for j, claim in enumerate(comp.claims):
            check(f"{at}.claims.{j}.a", claim.a)
            check(f"{at}.claims.{j}.b", claim.b)
            if set(claim.a) != set(claim.b) or not claim.a:
                problems.append(
                    (f"{at}.claims.{j}", "a and b must name the same factors (at least one)")
                )
            if claim.expect == "equal" and claim.margin <= 0:
                problems.append((f"{at}.claims.{j}.margin", "expect: equal needs a margin > 0"))
    if problems:
        raise SpecError(problems)


def build_study(file: StudyFile, base_dir: Path, *, quick: bool = False) -> Study:
    """Every job of the study (or of its quick form), validated; SpecError naming the
    study field behind each fault."""
    quick_block = file.quick if quick and file.quick else Quick()
    grid = {**file.grid, **quick_block.grid}
    _check_design(file, grid)
    keys = ([VARIANT] if file.variants else []) + list(grid)
    _check_comparisons(file, keys)
    seeds = quick_block.seeds or file.seeds
    total = max(1, len(file.variants)) * len(seeds)
    for values in grid.values():
        total *= len(values)
    if total > MAX_STUDY_JOBS:
        raise SpecError([("grid", f"{total} jobs; the limit is {MAX_STUDY_JOBS}")])
    base, source = _base(file, base_dir)
    names = display_names(keys)
    variants: list[Variant | None] = list(file.variants) or [None]
    jobs: list[StudyJob] = []
    groups: list[Group] = []
    parts: list[SweepPart] = []
    problems: dict[tuple[str, str], str] = {}
    for i, variant in enumerate(variants):
        data = base
        sources = [("quick.overrides", quick_block.overrides)]
        if variant is not None:
            sources.append((f"variants.{i}.overrides", variant.overrides))
            for path, value in variant.overrides.items():
                data = set_path(data, path, value)
        for path, value in quick_block.overrides.items():
            data = set_path(data, path, value)
        parts.append(SweepPart(variant.name if variant else None, data, grid))
        for combination in itertools.product(*grid.values()):
            overrides = dict(zip(grid, combination, strict=True))
            factors = {VARIANT: variant.name} if variant else {}
            factors.update(overrides)
            label = group_label(factors, names)
            point = data
            for path, value in overrides.items():
                point = set_path(point, path, value)
            members = []
            for seed in seeds:
                spec_data = {**point, "seed": seed, "name": f"{file.name} [{label}, seed={seed}]"}
                try:
                    spec = parse_spec(spec_data)
                except SpecError as exc:
                    for loc, msg in exc.problems:
                        where = _attribute(loc, [("grid", overrides), *sources])
                        problems.setdefault((where, msg), label)
                    continue
                members.append(StudyJob(folder_name(label, seed), label, factors, seed, spec))
            jobs += members
            groups.append(Group(label, factors, tuple(members)))
    if problems:
        raise SpecError([(w, f"{m} (in {g})") for (w, m), g in problems.items()])
    folders = [j.label for j in jobs]
    if len(set(folders)) != len(folders):
        clash = next(f for f in folders if folders.count(f) > 1)
        raise SpecError([("grid", f"two jobs share the folder name {clash!r}; use other values")])
    return Study(file, source, quick, grid, seeds, keys, groups, jobs, parts)


def parse_study(data: Any, base_dir: Path, *, quick: bool = False) -> Study:
    """A study from its data (a mapping): pydantic checks the form, build_study the jobs."""
    if not isinstance(data, dict):
        raise SpecError([("", f"a study must be a mapping, got {type(data).__name__}")])
    try:
        file = StudyFile.model_validate(data)
    except ValidationError as exc:
        problems = [
            (loc, msg.removeprefix("Value error, ").replace("the job spec", "a study"))
            for loc, msg in spec_problems(exc.errors())
        ]
        raise SpecError(problems) from None
    if quick and file.quick is None:
        raise SpecError([("quick", "--quick needs a `quick:` block in the study")])
    return build_study(file, base_dir, quick=quick)


def load_study_file(path: str | Path, *, quick: bool = False) -> Study:
    """Read and expand a YAML or JSON study file; SpecError naming every fault."""
    return parse_study(read_spec_data(path), Path(path).resolve().parent, quick=quick)
