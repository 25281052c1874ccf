"""MkDocs hooks: the reference pages' tables, generated from the code at build time.

A page asks for a generated block with a marker comment on a line of its own, such as
`<!-- generated: job-spec -->`; on_page_markdown replaces it. The job spec comes from
the pydantic models (JobSpec.model_fields, walked recursively), the HTTP API from the
app's OpenAPI document, the CLI from its argparse parser, the import contracts from
pyproject.toml. Nothing is copied by hand, so the pages cannot drift from the code.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)


def cell(text: object) -> str:
    """Text fit for one Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


# --- the job spec ---------------------------------------------------------------------


def anchor(path: str) -> str:
    return "spec-" + path.replace(".", "-").replace("_", "-")


def type_name(tp: Any, path: str) -> str:
    """A readable type; a nested model links to its own section."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"[object](#{anchor(path)})"
    if origin is typing.Annotated:
        return type_name(args[0], path)
    if origin is typing.Literal:
        return " \\| ".join(f"`{json.dumps(a)}`" for a in args)
    if origin in (typing.Union, types.UnionType):  # a union of models links once
        return " \\| ".join(dict.fromkeys(type_name(a, path) for a in args))
    if origin in (list, tuple):
        return f"list of {type_name(args[0], path)}" if args else "list"
    if origin is dict:
        return f"map of {type_name(args[0], path)} to {type_name(args[1], path)}"
    return getattr(tp, "__name__", str(tp))


def models_in(tp: Any) -> Iterator[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        yield tp
    for arg in typing.get_args(tp):
        yield from models_in(arg)


def default_of(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(its fields' defaults)"
    return f"`{json.dumps(value)}`"


def limits_of(field: FieldInfo) -> str:
    """Constraints such as ge=0, le=100, max_length=200."""
    names = ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern")
    found = [
        f"{name} {getattr(m, name)}"
        for m in field.metadata
        for name in names
        if getattr(m, name, None) is not None
    ]
    return ", ".join(found)


def described_below(field: FieldInfo) -> str:
    return "Its fields: the table below." if any(models_in(field.annotation)) else ""


def row(name: str, field: FieldInfo, key: str) -> str:
    return (
        f"| `{name}` | {type_name(field.annotation, key)} | {cell(default_of(field))} "
        f"| {cell(limits_of(field))} | {cell(field.description or described_below(field))} |"
    )


def doc_of(model: type[BaseModel]) -> list[str]:
    doc = (model.__doc__ or "").strip()
    return [" ".join(doc.split()), ""] if doc and model.__module__.startswith("aimc_spec") else []


TABLE = ["| field | type | default | allowed | description |", "|---|---|---|---|---|"]


def spec_sections(
    model: type[BaseModel],
    path: str,
    key: str = "",
    title: str = "",
    skip: frozenset[str] = frozenset(),
) -> Iterator[str]:
    """A model's table (less the fields in `skip`), then one section per nested model.
    `path` is the fields' path as a spec writes it, `key` the section's own (anchors:
    a device family's fields sit under its `model`); a union of models (the device
    families) gets a section per member (family_sections)."""
    key = key or path
    lines = [
        f"### {title or (f'`{path}`' if path else 'The top level')} {{#{anchor(key or 'top')}}}"
    ]
    lines += ["", *doc_of(model)]
    own = {name: field for name, field in model.model_fields.items() if name not in skip}
    lines += TABLE if own else ["No fields of its own: the shared ones above."]
    nested: list[tuple[list[type[BaseModel]], str, str]] = []
    for name, field in own.items():
        child, child_key = (f"{p}.{name}" if p else name for p in (path, key))
        lines.append(row(name, field, child_key))
        if subs := list(models_in(field.annotation)):
            nested.append((subs, child, child_key))
    yield "\n".join(lines)
    for subs, child, child_key in nested:
        if len(subs) == 1:
            yield from spec_sections(subs[0], child, child_key)
        else:
            yield from family_sections(subs, child)


def family_sections(members: list[type[BaseModel]], path: str) -> Iterator[str]:
    """A union discriminated by a tag field (`analog.device` by `model`): the fields of
    the members' common base in one table, then each member's own fields in a table of
    its own, headed by its tag."""
    base = next(c for c in members[0].__mro__ if all(issubclass(m, c) for m in members))
    shared = base.model_fields
    tag = next(n for n in shared if all(member_tag(m, n) for m in members))
    tags = [member_tag(m, tag) for m in members]
    links = ", ".join(f"[`{t}`](#{anchor(f'{path}.{tag}.{t}')})" for t in tags)
    lines = [f"### `{path}` {{#{anchor(path)}}}", "", *doc_of(base)]
    lines += [f"`{tag}` picks one of {links}; every one takes these fields:", "", *TABLE]
    for name, field in shared.items():
        if name != tag:
            lines.append(row(name, field, f"{path}.{name}"))
            continue
        defaults = [
            m.model_fields[tag].default for m in members if not m.model_fields[tag].is_required()
        ]
        default = f"`{json.dumps(defaults[0])}`" if defaults else "required"
        kinds = " \\| ".join(f"`{json.dumps(t)}`" for t in tags)
        lines.append(f"| `{name}` | {kinds} | {default} | | {cell(field.description)} |")
    yield "\n".join(lines)
    for member, value in zip(members, tags, strict=True):
        title = f"`{path}` with `{tag}: {value}`"
        yield from spec_sections(member, path, f"{path}.{tag}.{value}", title, frozenset(shared))


def member_tag(model: type[BaseModel], name: str) -> str | None:
    """The value of a union member's tag field `name` (a one-value Literal), or None."""
    field = model.model_fields.get(name)
    if field is None or typing.get_origin(field.annotation) is not typing.Literal:
        return None
    return str(typing.get_args(field.annotation)[0])


def job_spec() -> str:
    from aimc_spec.spec import JobSpec

    return "\n\n".join(spec_sections(JobSpec, ""))


# --- the HTTP API ---------------------------------------------------------------------


def schema_name(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#schema-{name.lower()})"
    if "anyOf" in schema:
        return " \\| ".join(schema_name(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"list of {schema_name(schema.get('items', {}))}"
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    return str(schema.get("type", "any"))


def http_api() -> str:
    from service.app import create_app

    doc = create_app().openapi()
    out = [f"OpenAPI {doc['openapi']}, {doc['info']['title']} {doc['info']['version']}."]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            out += ["", f"### `{method.upper()} {path}`", ""]
            if op.get("description") or op.get("summary"):
                out += [" ".join((op.get("description") or op["summary"]).split()), ""]
            params = op.get("parameters", [])
            if params:
                out += [
                    "| parameter | in | type | required | description |",
                    "|---|---|---|---|---|",
                ]
                out += [
                    f"| `{p['name']}` | {p['in']} | {schema_name(p.get('schema', {}))} "
                    f"| {'yes' if p.get('required') else 'no'} | {cell(p.get('description', ''))} |"
                    for p in params
                ]
                out.append("")
            body = op.get("requestBody", {}).get("content", {})
            for media, content in body.items():
                out += [f"Body ({media}): {schema_name(content.get('schema', {}))}", ""]
            out += ["| status | meaning |", "|---|---|"]
            out += [
                f"| {code} | {cell(r.get('description', ''))} |"
                for code, r in op["responses"].items()
            ]
    out += ["", "## Schemas", ""]
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        out += [f"### {name} {{#schema-{name.lower()}}}", ""]
        if schema.get("description"):
            out += [" ".join(schema["description"].split()), ""]
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        if props:
            out += ["| field | type | required | description |", "|---|---|---|---|"]
            out += [
                f"| `{key}` | {schema_name(p)} | {'yes' if key in required else 'no'} "
                f"| {cell(p.get('description', ''))} |"
                for key, p in props.items()
            ]
        out.append("")
    return "\n".join(out)


# --- the CLI --------------------------------------------------------------------------


def parsers(
    parser: argparse.ArgumentParser, name: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from parsers(sub, f"{name} {sub_name}")


def cli() -> str:
    from aimc_cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal's width: fix it
    out = []
    for name, parser in parsers(build_parser(), "aimc"):
        out += [f"### `{name}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    return "\n".join(out)


# --- the service's settings ---------------------------------------------------------


def env_names(name: str, field: FieldInfo) -> str:
    alias = field.validation_alias
    names = getattr(alias, "choices", None) or [f"AIMC_{name.upper()}"]
    return ", ".join(f"`{n}`" for n in names)


def settings_default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "computed (see the description)"
    value = field.default
    if isinstance(value, Path):  # a home directory is the reader's, not the builder's
        return f"`{str(value).replace(str(Path.home()), '~', 1)}`"
    return f"`{json.dumps(value)}`"


def settings() -> str:
    from aimc_store.settings import StoreSettings
    from service.settings import Settings
    from worker.settings import WorkerSettings

    out = []
    for title, model, base in (
        ("Read by the API and the workers", StoreSettings, None),
        ("Read by the API only", Settings, StoreSettings),
        ("Read by the workers only", WorkerSettings, StoreSettings),
    ):
        own = {
            k: f
            for k, f in model.model_fields.items()
            if base is None or k not in base.model_fields
        }
        out += [f"### {title}", "", "| variable | type | default | allowed | description |"]
        out.append("|---|---|---|---|---|")
        out += [
            f"| {env_names(name, f)} | {type_name(f.annotation, name)} | {settings_default(f)} "
            f"| {cell(limits_of(f))} | {cell(f.description or '')} |"
            for name, f in own.items()
        ]
        out.append("")
    return "\n".join(out)


# --- the import contracts -------------------------------------------------------------


def import_contracts() -> str:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    out = ["| contract | modules | may not import |", "|---|---|---|"]
    for c in config["tool"]["importlinter"]["contracts"]:
        modules = ", ".join(f"`{m}`" for m in c["source_modules"])
        forbidden = ", ".join(f"`{m}`" for m in c["forbidden_modules"])
        out.append(f"| {cell(c['name'])} | {modules} | {forbidden} |")
    return "\n".join(out)


def aihwkit_configs() -> str:
    """The 52 `analog.config` names and what each expands to (aimc_spec/configs.py)."""
    from aimc_spec.configs import CONFIGS

    lines = [
        "| aihwkit 1.2 class | alias | algorithm | device | unit cell | settings |",
        "|---|---|---|---|---|---|",
    ]
    for c in CONFIGS.values():
        analog, optimizer = c.spec["analog"], c.spec["optimizer"]
        algorithm = optimizer["algorithm"]
        cell_spec = analog.get("unit_cell")
        unit = "—"
        if cell_spec:
            unit = f"{cell_spec['kind']}" + (
                f", {cell_spec['devices']} devices, {cell_spec['update_policy']}"
                if cell_spec["kind"] == "vector"
                else f", refresh_every {cell_spec['refresh_every']}"
            )
        settings = [f"bit_length {analog['bit_length']}"]
        settings += [f"{k} {v}" for k, v in optimizer.get(algorithm, {}).items()]
        if analog["device"].get("subtract_symmetry_point"):
            settings.append("device subtract_symmetry_point true")
        lines.append(
            f"| `{c.name}` | `{c.alias}` | {algorithm} | {c.device} | {unit} | "
            f"{cell(', '.join(settings))} |"
        )
    return "\n".join(lines)


GENERATORS: dict[str, Callable[[], str]] = {
    "aihwkit-configs": aihwkit_configs,
    "job-spec": job_spec,
    "http-api": http_api,
    "cli": cli,
    "import-contracts": import_contracts,
    "settings": settings,
}


def on_page_markdown(markdown: str, **_: Any) -> str:
    def replace(match: re.Match[str]) -> str:
        return GENERATORS[match.group(1)]()

    return MARKER.sub(replace, markdown)
