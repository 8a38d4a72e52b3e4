"""The generated configuration reference (docs/api/config_reference.py) lists every key of every section with
its default, so it cannot drift from the pydantic models of moireu.config."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
from pydantic import BaseModel

from moireu.config import MoireuConfig

_PATH = Path(__file__).resolve().parents[1] / "docs" / "api" / "config_reference.py"


@pytest.fixture(scope="module")
def ref() -> Any:
    spec = importlib.util.spec_from_file_location("moireu_docs_config_reference", _PATH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


def _leaves(model: type[BaseModel], values: dict[str, Any], prefix: str = "") -> dict[str, tuple[type, Any]]:
    """Every scalar key of the resolved default config: dotted path → (model, JSON default), walked independently."""
    out: dict[str, tuple[type, Any]] = {}
    for key, info in model.model_fields.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            out |= _leaves(info.annotation, values[key], path)
        else:
            out[path] = (model, values[key])
    return out


def _sections(model: type[BaseModel], prefix: str = "") -> set[str]:
    names = {prefix}
    for key, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            names |= _sections(info.annotation, f"{prefix}.{key}" if prefix else key)
    return names


def test_every_key_of_every_section_with_its_default(ref: Any) -> None:
    defaults = MoireuConfig().model_dump(mode="json")
    expected = _leaves(MoireuConfig, defaults)
    rows = {r.path: r for sec in ref.config_sections() for r in sec.rows}
    assert set(rows) == set(expected)
    for path, (_, value) in expected.items():
        shown = rows[path].default
        if value is None:
            assert shown == "unset", path
        else:
            assert tomllib.loads(f"v = {shown}")["v"] == value, (path, shown, value)


def test_sections_and_their_models(ref: Any) -> None:
    secs = ref.config_sections()
    names = {"" if s.name == ref.TOP_LEVEL else s.name for s in secs}
    assert names == _sections(MoireuConfig)
    for s in secs:
        assert [r.key for r in s.rows] == [k for k, i in s.model.model_fields.items()
                                           if not (isinstance(i.annotation, type) and issubclass(i.annotation, BaseModel))]


def test_allowed_values_and_descriptions(ref: Any) -> None:
    for sec in ref.config_sections():
        for r in sec.rows:
            info = sec.model.model_fields[r.key]
            assert r.description == (info.description or "")
            if get_origin(info.annotation) is Literal:
                for choice in get_args(info.annotation):
                    assert f'``"{choice}"``' in r.allowed, r.path
            for meta in info.metadata:
                for attr, sym in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
                    if hasattr(meta, attr):
                        assert f"{sym} {getattr(meta, attr)!r}" in r.allowed, r.path
    rows = {r.path: r for sec in ref.config_sections() for r in sec.rows}
    assert "a_cc" in rows["lattice.cutoff"].allowed  # a field validator's docstring
    assert "lo ≤ hi" in rows["stm.measurement.pixel_size"].allowed  # read through the lambda's helper


def test_rendered_tables(ref: Any) -> None:
    """Each section's table in the reStructuredText holds one row per key, with its type and default."""
    text = ref.config_reference_rst()
    blocks = text.split("\n.. list-table::\n")[1:]
    secs = ref.config_sections()
    assert len(blocks) == len(secs)
    for sec, block in zip(secs, blocks, strict=True):
        for r in sec.rows:
            assert f"   * - ``{r.key}``\n     - ``{r.type}``\n     - ``{r.default}``\n" in block, r.path
        assert block.count("   * - ``") == len(sec.rows)
    assert "Top-level keys" in text and "``[stm.measurement]``" in text
