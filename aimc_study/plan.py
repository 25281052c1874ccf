"""A study expanded: the jobs of every combination of its factors and seeds, each spec
validated, grouped for comparisons and cut into service sweeps; a study with parts as a
plan of several.

Every job spec is validated when the study is read, so a study runs whole or not at all.
Torch-free: the CLI expands studies both to run them locally and to send them as sweeps.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from aimc_spec.spec import JobSpec, SpecError, parse_spec, read_spec_data, spec_problems
from aimc_spec.sweep import set_path
from aimc_study.checks import check_comparisons, check_design
from aimc_study.design import MAX_STUDY_JOBS, Quick, StudyFile, Variant, named_factors


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


def _check_count(seeds: int, axes: list[Any]) -> None:
    """SpecError if seeds x the product of the axes' lengths is past MAX_STUDY_JOBS."""
    total = seeds
    for values in axes:
        total *= len(values)
    if total > MAX_STUDY_JOBS:
        raise SpecError([("grid", f"{total} jobs; the limit is {MAX_STUDY_JOBS}")])


def _check_folders(jobs: list[StudyJob]) -> None:
    """SpecError if two jobs would write the same run folder."""
    folders = [j.label for j in jobs]
    if len(set(folders)) != len(folders):
        clash = next(f for f in folders if folders.count(f) > 1)
        raise SpecError([("grid", f"two jobs share the folder name {clash!r}; use other values")])


def build_study(file: StudyFile, base_dir: Path, *, quick: bool = False) -> Study:
    """Every job of the study (or of its quick form), validated; SpecError naming the
    study field behind each fault."""
    quick_block = file.quick if quick and file.quick else Quick()
    grid = {**file.grid, **quick_block.grid}
    check_design(file, grid)
    named = [
        (name, where, [v for v in levels if v.name in quick_block.factors.get(name, [v.name])])
        for name, where, levels in named_factors(file)
    ]
    keys = [name for name, _, _ in named] + list(grid)
    check_comparisons(file, keys)
    seeds = quick_block.seeds or file.seeds
    _check_count(len(seeds), [*grid.values(), *(levels for _, _, levels in named)])
    base, source = _base(file, base_dir)
    names = display_names(keys)
    jobs: list[StudyJob] = []
    groups: list[Group] = []
    parts: list[SweepPart] = []
    problems: dict[tuple[str, str], str] = {}
    written = {name: levels for name, _, levels in named_factors(file)}  # before quick's choice
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
    _check_folders(jobs)
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
            for loc, msg in spec_problems(exc.errors(), StudyFile)
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
