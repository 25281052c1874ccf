"""A study: a base spec, a grid of overrides, named variants and seeds, expanded into jobs,
and the comparisons (with claims) to draw from their final metrics.

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
values. Every job spec is validated when the study is read, so a study runs whole or not
at all. Torch-free: the CLI expands studies both to run them locally and to send them as
sweeps.
"""

from __future__ import annotations

import ast
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from aimc_spec.metric_record import METRIC_COLUMNS
from aimc_spec.spec import (
    JobSpec,
    SpecError,
    _fail,
    parse_spec,
    read_spec_data,
    spec_problems,
)
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


FORMULA_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Load)
FORMULA_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd)


def formula_names(text: str) -> list[str]:
    """The symbols of an arithmetic formula (+ - * / ** on numbers and names); ValueError
    for anything else, so a study file cannot run code."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"{text!r} is not a formula: {exc.msg}") from None
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.operator | ast.unaryop):
            if not isinstance(node, FORMULA_OPS):
                raise ValueError(f"{text!r}: only + - * / ** are allowed")
        elif not isinstance(node, FORMULA_NODES):
            raise ValueError(f"{text!r}: only numbers, names and + - * / ** are allowed")
        elif isinstance(node, ast.Constant) and not isinstance(node.value, int | float):
            raise ValueError(f"{text!r}: {node.value!r} is not a number")
        elif isinstance(node, ast.Name):
            names.append(node.id)
    return sorted(set(names))


def evaluate_formula(text: str, values: dict[str, float]) -> float:
    """The formula's value with its symbols bound (checked by formula_names first)."""
    formula_names(text)

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            assert isinstance(node.value, int | float)  # formula_names allows numbers only
            return float(node.value)
        if isinstance(node, ast.Name):
            return float(values[node.id])
        if isinstance(node, ast.UnaryOp):
            return -ev(node.operand) if isinstance(node.op, ast.USub) else ev(node.operand)
        assert isinstance(node, ast.BinOp)
        left, right = ev(node.left), ev(node.right)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if isinstance(node.op, ast.Div):
            return left / right if right else math.nan
        return float(left**right)

    return ev(ast.parse(text, mode="eval"))


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
        description="Compare the simulated time (ns) at which the metric first reaches this "
        "value (at least it; at most it for a loss) instead of the metric.",
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
    """Jobs of one combination of named-factor levels as one service sweep: base (levels
    and quick applied) + grid. `variant` names the levels ("digital"; None without any)."""

    variant: str | None
    levels: dict[str, str]
    base: dict[str, Any]
    grid: dict[str, list[Any]]


@dataclass(frozen=True)
class Study:
    file: StudyFile
    source: str  # where the base spec came from (a path, or "inline")
    quick: bool
    grid: dict[str, list[Any]]  # quick's values applied
    seeds: list[int]
    keys: list[str]  # the factors: "variant" and named factors (if any), then the grid keys
    groups: list[Group]
    jobs: list[StudyJob]
    parts: list[SweepPart]
    levels: dict[str, list[Variant]]  # each named factor's levels ("variant" for variants)

    @property
    def name(self) -> str:
        return self.file.name

    def matching(self, selector: dict[str, Any]) -> list[Group]:
        return [g for g in self.groups if all(g.factors.get(k) == v for k, v in selector.items())]

    def position(self, key: str, value: Any) -> float:
        """A factor value as a number (a trend's x, a formula's symbol): the grid value, or
        the level's `value` (checked numeric when the study was read)."""
        if key in self.levels:
            level = next(v for v in self.levels[key] if v.name == value)
            assert level.value is not None
            return level.value
        return float(value)


@dataclass(frozen=True)
class StudyPlan:
    """A study file expanded: one Study, or one per part, each run into its own folder."""

    file: StudyFile
    studies: list[Study]

    @property
    def parted(self) -> bool:
        return bool(self.file.parts)

    def folder(self, out: Path, study: Study) -> Path:
        """Where a study's runs/, CSVs, figures and report go: OUT, or OUT/<part name>."""
        return out / study.name if self.parted else out

    @property
    def jobs(self) -> int:
        return sum(len(s.jobs) for s in self.studies)


def display_names(keys: list[str]) -> dict[str, str]:
    """Each factor by its last path segment, unless two keys share it (then in full)."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 else k for k, s in zip(keys, last, strict=True)}


def group_label(factors: dict[str, Any], names: dict[str, str], named: set[str]) -> str:
    parts = [str(v) if k in named else f"{names[k]}={v}" for k, v in factors.items()]
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
    if file.spec is None:
        raise SpecError([("spec", "a study needs a base spec (a mapping or a file path)")])
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


def _named(file: StudyFile) -> list[tuple[str, str, list[Variant]]]:
    """The named factors as (factor, where in the file, levels): variants first."""
    found = [(VARIANT, "variants", file.variants)] if file.variants else []
    return found + [(name, f"factors.{name}", levels) for name, levels in file.factors.items()]


def _check_design(file: StudyFile, grid: dict[str, list[Any]]) -> None:
    problems = []
    quick = file.quick or Quick()
    for key in quick.grid:
        if key not in file.grid:
            problems.append((f"quick.grid.{key}", "not a grid key; quick.grid only shrinks it"))
    all_levels = {name: [v.name for v in levels] for name, _, levels in _named(file)}
    for key, keep in quick.factors.items():
        if key not in all_levels:
            problems.append(
                (f"quick.factors.{key}", f"not a named factor; allowed: {list(all_levels)}")
            )
        elif not keep or any(k not in all_levels[key] for k in keep):
            problems.append(
                (f"quick.factors.{key}", f"{keep}: a non-empty choice of {all_levels[key]}")
            )
    if (clash := _overlaps(quick.overrides, grid)) is not None:
        problems.append((f"quick.overrides.{clash}", "is a grid key; shrink it with quick.grid"))
    named = _named(file)
    for k, (factor, where, levels) in enumerate(named):
        if factor in grid:
            problems.append((where, f"{factor!r} is also a grid key"))
        for i, level in enumerate(levels):
            if (clash := _overlaps(level.overrides, grid)) is not None:
                problems.append((f"{where}.{i}.overrides.{clash}", "is also a grid key"))
            for other, _, other_levels in named[:k]:
                for o in other_levels:
                    if (clash := _overlaps(level.overrides, o.overrides)) is not None:
                        problems.append(
                            (f"{where}.{i}.overrides.{clash}", f"is set by factor {other!r} too")
                        )
        names = [v.name for v in levels]
        if len(set(names)) != len(names):
            problems.append((where, f"names must be distinct, got {names}"))
    if problems:
        raise SpecError(list(dict.fromkeys(problems)))


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positions(file: StudyFile, key: str) -> list[float] | None:
    """A factor's values as numbers, or None if some value is not one."""
    levels = {name: options for name, _, options in _named(file)}.get(key)
    if levels is not None:
        values = [v.value for v in levels]
        return [float(v) for v in values if v is not None] if None not in values else None
    grid = file.grid.get(key, [])
    return [float(v) for v in grid] if all(_numeric(v) for v in grid) else None


def _check_comparisons(file: StudyFile, keys: list[str]) -> None:
    values: dict[str, list[Any]] = {**file.grid}
    values.update({name: [v.name for v in levels] for name, _, levels in _named(file)})
    problems = []

    def check(where: str, selector: dict[str, Any]) -> None:
        for key, value in selector.items():
            if key not in keys:
                problems.append((f"{where}.{key}", f"not a factor; allowed: {', '.join(keys)}"))
            elif value not in values[key]:
                problems.append((f"{where}.{key}", f"{value!r} is not one of {values[key]}"))

    def numeric(where: str, key: str, named: dict[str, Any], positive: bool = False) -> None:
        if key not in keys:
            problems.append((where, f"{key!r} is not a factor; allowed: {', '.join(keys)}"))
        elif key in named:
            problems.append((where, f"{key!r} is fixed by a and b; it must vary"))
        elif (xs := _positions(file, key)) is None:
            problems.append(
                (where, f"{key!r} has values that are not numbers (give its levels a `value`)")
            )
        elif positive and min(xs) <= 0:
            problems.append((where, f"log_x needs positive values of {key!r}, got {xs}"))

    for i, comp in enumerate(file.comparisons):
        at = f"comparisons.{i}"
        check(f"{at}.where", comp.where)
        if comp.x is not None and comp.x not in file.grid:
            problems.append(
                (f"{at}.x", f"{comp.x!r} is not a grid key; allowed: {list(file.grid)}")
            )
        for j, claim in enumerate(comp.claims):
            here = f"{at}.claims.{j}"
            check(f"{here}.a", claim.a)
            check(f"{here}.b", claim.b)
            if claim.kind == "trend":  # a alone picks the groups; with b, the gap a - b
                if claim.b and set(claim.a) != set(claim.b):
                    problems.append((here, "a and b must name the same factors"))
            elif set(claim.a) != set(claim.b) or not claim.a:
                problems.append((here, "a and b must name the same factors (at least one)"))
            if claim.kind == "trend" and claim.x is not None:
                numeric(f"{here}.x", claim.x, claim.a, positive=claim.log_x)
            for symbol, key in claim.symbols.items():
                numeric(f"{here}.symbols.{symbol}", key, claim.a)
            if claim.expect == "equal" and claim.margin <= 0:
                problems.append((f"{here}.margin", "expect: equal needs a margin > 0"))
    if problems:
        raise SpecError(problems)


def build_study(file: StudyFile, base_dir: Path, *, quick: bool = False) -> Study:
    """Every job of the study (or of its quick form), validated; SpecError naming the
    study field behind each fault."""
    quick_block = file.quick if quick and file.quick else Quick()
    grid = {**file.grid, **quick_block.grid}
    _check_design(file, grid)
    named = [
        (name, where, [v for v in levels if v.name in quick_block.factors.get(name, [v.name])])
        for name, where, levels in _named(file)
    ]
    keys = [name for name, _, _ in named] + list(grid)
    _check_comparisons(file, keys)
    seeds = quick_block.seeds or file.seeds
    total = len(seeds)
    for values in [*grid.values(), *(levels for _, _, levels in named)]:
        total *= len(values)
    if total > MAX_STUDY_JOBS:
        raise SpecError([("grid", f"{total} jobs; the limit is {MAX_STUDY_JOBS}")])
    base, source = _base(file, base_dir)
    names = display_names(keys)
    jobs: list[StudyJob] = []
    groups: list[Group] = []
    parts: list[SweepPart] = []
    problems: dict[tuple[str, str], str] = {}
    written = {name: levels for name, _, levels in _named(file)}  # before quick's choice
    for chosen in itertools.product(*(levels for _, _, levels in named)):
        data = base
        sources = [("quick.overrides", quick_block.overrides)]
        levels = {}
        for (factor, where, _), level in zip(named, chosen, strict=True):
            levels[factor] = level.name
            i = written[factor].index(level)
            sources.append((f"{where}.{i}.overrides", level.overrides))
            for path, value in level.overrides.items():
                data = set_path(data, path, value)
        for path, value in quick_block.overrides.items():
            data = set_path(data, path, value)
        parts.append(SweepPart(", ".join(levels.values()) or None, levels, data, grid))
        for combination in itertools.product(*grid.values()):
            overrides = dict(zip(grid, combination, strict=True))
            factors: dict[str, Any] = {**levels, **overrides}
            label = group_label(factors, names, set(levels))
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
    all_levels = {name: levels for name, _, levels in named}
    return Study(file, source, quick, grid, seeds, keys, groups, jobs, parts, all_levels)


def _part_file(top: StudyFile, part: StudyFile) -> StudyFile:
    """A part as a study of its own: the top's spec, seeds and quick where it gives none
    (quick overrides merge, the part's winning)."""
    update: dict[str, Any] = {"spec": part.spec if part.spec is not None else top.spec}
    if "seeds" not in part.model_fields_set:
        update["seeds"] = top.seeds
    if top.quick is not None or part.quick is not None:
        outer, inner = top.quick or Quick(), part.quick or Quick()
        update["quick"] = Quick(
            overrides={**outer.overrides, **inner.overrides},
            grid=inner.grid,
            factors=inner.factors,
            seeds=inner.seeds or outer.seeds,
        )
    return part.model_copy(update=update)


def parse_plan(data: Any, base_dir: Path, *, quick: bool = False) -> StudyPlan:
    """A study file's data expanded: pydantic checks the form, build_study each part's
    jobs; SpecError naming every fault (a part's as parts.<i>.<field>)."""
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
    if not file.parts:
        if quick and file.quick is None:
            raise SpecError([("quick", "--quick needs a `quick:` block in the study")])
        return StudyPlan(file, [build_study(file, base_dir, quick=quick)])
    studies, problems = [], []
    for i, part in enumerate(file.parts):
        merged = _part_file(file, part)
        if quick and merged.quick is None:
            problems.append((f"parts.{i}.quick", "--quick needs a `quick:` block here or on top"))
            continue
        try:
            studies.append(build_study(merged, base_dir, quick=quick))
        except SpecError as exc:
            problems += [(f"parts.{i}.{loc}".rstrip("."), msg) for loc, msg in exc.problems]
    if problems:
        raise SpecError(problems)
    return StudyPlan(file, studies)


def load_plan(path: str | Path, *, quick: bool = False) -> StudyPlan:
    """Read and expand a YAML or JSON study file (with or without parts)."""
    return parse_plan(read_spec_data(path), Path(path).resolve().parent, quick=quick)


def parse_study(data: Any, base_dir: Path, *, quick: bool = False) -> Study:
    """A study without parts from its data (a mapping)."""
    plan = parse_plan(data, base_dir, quick=quick)
    if plan.parted:
        raise SpecError([("parts", "this study has parts: read it with parse_plan")])
    return plan.studies[0]


def load_study_file(path: str | Path, *, quick: bool = False) -> Study:
    """Read and expand a YAML or JSON study file without parts; SpecError naming every
    fault."""
    return parse_study(read_spec_data(path), Path(path).resolve().parent, quick=quick)
