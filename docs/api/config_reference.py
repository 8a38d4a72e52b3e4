"""The configuration reference, generated from the pydantic models of :mod:`moireu.config` (never hand-written).

:func:`config_sections` walks :class:`moireu.config.MoireuConfig` and its sections (nested sections such as
``stm.measurement`` included) and returns one :class:`Section` per table: every field with its type, its
default (as written in TOML), the values it accepts and its description. The accepted values come from the
model itself: ``Literal`` choices, the ``ge`` / ``gt`` / ``le`` / ``lt`` bounds of ``Field`` and the first
line of the docstring of each field validator (a validator that is a one-line lambda is read through the
helper it calls); the docstrings of model validators become notes under the section's table.

:func:`config_reference_rst` renders the sections as reStructuredText, and :func:`setup` makes this module a
Sphinx extension with the directive ``.. moireu-config-reference::`` (used by ``config-reference.rst``), so
the reference is rebuilt from the code on every documentation build. ``tests/test_config_reference.py``
checks that it lists every field of every section with its default.
"""

from __future__ import annotations

import inspect
import json
import re
import types
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel

import moireu.config as config_module
from moireu.config import MoireuConfig

TOP_LEVEL = "top level"  # name of the section of MoireuConfig's own scalar keys


@dataclass(frozen=True)
class Row:
    """One configuration key: dotted ``section.key`` path, type, TOML default, accepted values, description.

    ``allowed`` is reStructuredText (choices as literals); ``description`` is the field's plain text.
    """

    key: str
    path: str
    type: str
    default: str
    allowed: str
    description: str


@dataclass(frozen=True)
class Section:
    """One table of the reference: a config model and its scalar keys (sub-sections get their own table)."""

    name: str
    model: type[BaseModel]
    summary: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def type_name(ann: Any) -> str:
    """A readable name of a field annotation (``Literal`` choices shown as their value type)."""
    origin = get_origin(ann)
    if ann is type(None):
        return "None"
    if origin is Literal:
        return " | ".join(sorted({type(a).__name__ for a in get_args(ann)}))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(ann))
    if origin is tuple:
        return "tuple[" + ", ".join("..." if a is Ellipsis else type_name(a) for a in get_args(ann)) + "]"
    if isinstance(ann, type):
        return ann.__name__
    return str(ann).replace("typing.", "")


def toml_value(v: Any) -> str:
    """``v`` as written in a TOML config file (tuples are arrays; ``None``, which TOML lacks, is "unset")."""
    if v is None:
        return "unset"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {type(v).__name__}")


_BOUNDS = ((annotated_types.Ge, "ge", "≥"), (annotated_types.Gt, "gt", ">"), (annotated_types.Le, "le", "≤"),
           (annotated_types.Lt, "lt", "<"))


def _doc_line(func: Any) -> str:
    """First paragraph of a validator's docstring; a docstring-less lambda is read through the helper it calls."""
    func = getattr(func, "__func__", func)
    doc = inspect.getdoc(func)
    if not doc and getattr(func, "__name__", "") == "<lambda>":
        helpers = [getattr(config_module, n, None) for n in func.__code__.co_names]
        docs = [inspect.getdoc(h) for h in helpers if inspect.isfunction(h) and inspect.getdoc(h)]
        doc = docs[0] if len(docs) == 1 else None
    return " ".join(doc.split("\n\n")[0].split()).rstrip(".") if doc else ""


def allowed_values(model: type[BaseModel], name: str) -> str:
    """What field ``name`` of ``model`` accepts: Literal choices, numeric bounds, field validators' rules."""
    info = model.model_fields[name]
    parts: list[str] = []
    if get_origin(info.annotation) is Literal:
        parts.append("one of " + ", ".join(f"``{toml_value(a)}``" for a in get_args(info.annotation)))
    bounds = []
    for meta in info.metadata:
        for cls, attr, sym in _BOUNDS:
            if isinstance(meta, cls):
                bounds.append(f"{sym} {getattr(meta, attr)!r}")
    if bounds:
        parts.append(", ".join(bounds))
    for dec in model.__pydantic_decorators__.field_validators.values():
        if name in dec.info.fields:
            line = _inline(_doc_line(dec.func))
            if line and line not in parts:
                parts.append(line)
    return "; ".join(parts)


def _section_summary(model: type[BaseModel]) -> str:
    doc = inspect.getdoc(model) or ""
    return " ".join(doc.split("\n\n")[0].split())


def _is_section(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def config_sections(model: type[BaseModel] = MoireuConfig, prefix: str = "") -> list[Section]:
    """Every table of the reference, depth first: ``model``'s own keys, then each sub-section in field order."""
    name = prefix or TOP_LEVEL
    sec = Section(name=name, model=model, summary=_section_summary(model))
    subsections: list[Section] = []
    for key, info in model.model_fields.items():
        path = f"{prefix}.{key}" if prefix else key
        if _is_section(info.annotation):
            subsections.extend(config_sections(info.annotation, path))
            continue
        default = info.get_default(call_default_factory=True)
        sec.rows.append(Row(key=key, path=path, type=type_name(info.annotation), default=toml_value(default),
                            allowed=allowed_values(model, key), description=info.description or ""))
    for dec in model.__pydantic_decorators__.model_validators.values():
        line = _inline(_doc_line(dec.func))
        if line:
            sec.notes.append(line)
    return [sec, *subsections]


def _inline(text: str) -> str:
    """Plain text for an RST table cell: `x` becomes a literal; ``*``, ``|``, ``\\`` and a trailing ``_`` are escaped."""
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for p in parts:
        if p.startswith("`") and p.endswith("`") and len(p) > 1:
            out.append(f"``{p.strip('`')}``")
        else:
            p = re.sub(r"([\\*|])", r"\\\1", p)
            out.append(re.sub(r"(?<=\w)_(?=[\s.,;:!?)\]]|$)", r"\\_", p))  # ``word_`` would be a link
    return "".join(out)


def config_reference_rst(sections: list[Section] | None = None) -> str:
    """The reference as reStructuredText: a titled ``list-table`` per section (key, type, default, allowed, description)."""
    sections = config_sections() if sections is None else sections
    lines: list[str] = []
    for sec in sections:
        title = "Top-level keys" if sec.name == TOP_LEVEL else f"``[{sec.name}]``"
        lines += [title, "-" * len(title), ""]
        if sec.summary:
            lines += [f"{sec.summary} Model: :class:`~{sec.model.__module__}.{sec.model.__qualname__}`.", ""]
        lines += [".. list-table::", "   :header-rows: 1", "   :widths: 14 14 14 20 38", "",
                  "   * - key", "     - type", "     - default", "     - allowed values", "     - description"]
        for r in sec.rows:
            lines += [f"   * - ``{r.key}``", f"     - ``{r.type}``", f"     - ``{r.default}``",
                      f"     - {r.allowed or '—'}", f"     - {_inline(r.description) or '—'}"]
        lines.append("")
        for note in sec.notes:
            lines += [f"Checked across keys: {note}.", ""]
    return "\n".join(lines)


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension: the ``moireu-config-reference`` directive renders :func:`config_reference_rst`."""
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective
    from sphinx.util.nodes import nested_parse_with_titles

    class ConfigReference(SphinxDirective):
        has_content = False

        def run(self) -> list[nodes.Node]:
            self.env.note_dependency(config_module.__file__)
            text = config_reference_rst()
            node = nodes.section()
            node.document = self.state.document
            nested_parse_with_titles(self.state, StringList(text.splitlines(), source="<moireu.config>"), node)
            return node.children

    app.add_directive("moireu-config-reference", ConfigReference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
