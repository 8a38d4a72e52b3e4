"""Sphinx configuration of the moireu API reference (``make docs``).

Built warning-free in CI: ``sphinx-build -W --keep-going -b html docs/api docs/api/_build/html``.
No network: intersphinx is off and the theme is the bundled alabaster.

Pages: ``index.rst``, one page per subpackage (``lattice.rst`` … ``cli.rst``), ``config.rst``, ``core.rst``
(the top-level modules) and ``config-reference.rst``, whose tables the local extension ``config_reference``
(this folder) generates from the pydantic models. The page of every module and the module table of every
subpackage page are stubs written to ``_generated/`` on every build (git-ignored; found by walking the
package, so a new module gets its page and a removed one leaves none): each module page is an autosummary
table of the members the module defines, then autodoc's ``automodule`` (its docstring and those members,
numpydoc docstrings).

The stubs are written here, not by autosummary's own generator: autosummary resolves ``pkg.mod`` as the
attribute ``mod`` of ``pkg`` first, and three packages re-export a function named like one of their
modules (``moireu.io.readers``, ``moireu.ml.augment``, ``moireu.stm.ftldos``), whose pages it would make
function pages.

Warnings silenced, all from third-party objects (nothing of moireu is hidden): classes and functions a
module imports from another package are skipped (scipy's compiled ``cKDTree`` fails autodoc's signature
formatting), and so is pydantic's ``model_config`` attribute with its Markdown docstring.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from pathlib import Path

import moireu

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the local extension config_reference

project = "moireu"
author = "moireu developers"
copyright = "moireu developers"  # Sphinx's setting name
version = release = moireu.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "config_reference",
]
# sphinx.ext.intersphinx stays off: CI reaches no network beyond the package registries

html_theme = "alabaster"
html_title = f"moireu {release} API"
exclude_patterns = ["_build"]
root_doc = "index"

autosummary_generate = False  # the stubs are written by _write_stubs below (see the module docstring)

# each module documents what it defines: the packages' __init__ re-export names through __all__, and
# documenting those again would give one object two pages and cross-references two targets
autodoc_default_options = {
    "members": True,
    "ignore-module-all": True,
    "member-order": "bysource",
    "show-inheritance": True,
}
autodoc_typehints = "signature"
autoclass_content = "class"

# numpydoc: the class pages list their members through autodoc, not through numpydoc's own tables
numpydoc_show_class_members = False
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# subpackages with a page of their own (``<name>.rst``); every other top-level module is on core.rst,
# moireu.config on config.rst
PAGES = ("lattice", "hf", "stm", "data", "ml", "analysis", "io", "plot", "cli")
# modules left out of the reference: the `python -m` entry points (importing them runs the CLI)
UNDOCUMENTED = {"moireu.__main__", "moireu.cli.__main__"}
GENERATED = HERE / "_generated"


def _all_modules() -> list[str]:
    names = {m.name for m in pkgutil.walk_packages(moireu.__path__, "moireu.")}
    return sorted(names - UNDOCUMENTED)


def _summary(obj: object) -> str:
    """First sentence-ish line of a docstring, for the module tables."""
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


def _members(mod: object) -> list[str]:
    """What ``automodule`` documents: public functions and classes defined in ``mod`` that have a docstring."""
    out = []
    for name, obj in vars(mod).items():
        if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, "__module__", None) == mod.__name__ and inspect.getdoc(obj):
            out.append(name)
    return out


def _module_stub(name: str) -> str:
    """The page of module ``name``: an autosummary table of its members, then ``automodule`` (docstring, members)."""
    try:
        members = _members(importlib.import_module(name))
    except Exception:  # autodoc reports the import error on the page
        members = []
    lines = [name, "=" * len(name), ""]
    if members:
        lines += [f".. currentmodule:: {name}", "", ".. autosummary::", "", *[f"   {m}" for m in members], ""]
    lines += [f".. automodule:: {name}", ""]
    return "\n".join(lines)


def _write_stubs(app) -> None:  # a Sphinx event handler
    """Write the module pages and the module tables of the subpackage pages into ``_generated/``.

    A file is rewritten only when its text changes (so a rebuild rereads only what changed) and a file
    that no module asks for any more is removed (so a deleted module leaves no orphan page).
    """
    files: dict[str, str] = {}
    groups: dict[str, list[str]] = {f"moireu.{p}": [] for p in PAGES}
    groups["moireu"] = []
    for name in _all_modules():
        if name == "moireu.config":
            continue  # on config.rst
        top = ".".join(name.split(".")[:2])
        if top in groups and name != top:
            groups[top].append(name)
        elif top not in groups:
            groups["moireu"].append(name)
        else:
            continue  # the package itself: documented on its own page
        files[f"{name}.rst"] = _module_stub(name)
    for pkg, names in groups.items():
        rows = []
        for name in names:
            try:
                summary = _summary(importlib.import_module(name))
            except Exception:  # autodoc reports the import error on the module's page
                summary = ""
            rows += [f"   * - :mod:`{name}`", f"     - {summary}"]
        text = ["Modules", "-------", "", ".. list-table::", "   :widths: 30 70", "", *rows, "",
                ".. toctree::", "   :hidden:", "", *[f"   _generated/{n}" for n in names], ""]
        files[f"{pkg}.modules.inc"] = "\n".join(text)
    GENERATED.mkdir(exist_ok=True)
    for old in GENERATED.iterdir():
        if old.name not in files:
            old.unlink()
    for fname, text in files.items():
        path = GENERATED / fname
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def _check_every_module_documented(app, env) -> None:  # a Sphinx event handler
    """Warn (an error under ``-W``) for a module of moireu that no page documents."""
    from sphinx.util import logging

    documented = set(env.domaindata["py"]["modules"])
    for name in sorted((set(_all_modules()) | {"moireu"}) - documented):
        logging.getLogger(__name__).warning("module %s is documented on no page of docs/api", name)


def _skip_foreign(app, what, name, obj, skip, options):  # a Sphinx event handler
    """Skip the classes and functions a module imports from another package (e.g. scipy's ``cKDTree`` in
    :mod:`moireu.lattice.model`): ``ignore-module-all`` already leaves them out of the pages, but autodoc
    formats their signatures first, and some compiled ones (``cKDTree``) fail to format."""
    if what == "module" and (inspect.isclass(obj) or inspect.isroutine(obj)):
        if not str(getattr(obj, "__module__", "") or "").startswith("moireu"):
            return True
    return None


def _skip_pydantic_config(app, what, name, obj, skip, options):  # a Sphinx event handler
    """Skip ``model_config`` of the pydantic models: autodoc would show it under pydantic's own docstring
    (a third-party one, in Markdown); the settings it holds are described in :class:`moireu.config._Section`."""
    return True if what == "class" and name == "model_config" else None


def _pydantic_signature(app, what, name, obj, options, signature, return_annotation):
    """No signature for pydantic models: it is every field with its ``Annotated`` bounds on one line; the
    configuration reference lists the same fields as a table (key, type, default, allowed values)."""
    from pydantic import BaseModel

    if what == "class" and inspect.isclass(obj) and issubclass(obj, BaseModel):
        return "", None
    return None


def _lookup(dotted: str) -> object | None:
    """The object at a dotted path (a module, or attributes below the longest importable module), or None."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _resolve_reexport(app, env, node, contnode):  # a Sphinx event handler
    """Resolve a reference to a name a package re-exports (``moireu.hf.HFSystem``, or ``fermi_solve`` in
    :mod:`moireu.lattice`'s docstring) to the page of the module that defines it (``moireu.hf.system``)."""
    if node.get("refdomain") != "py":
        return None
    target, mod, cls = node["reftarget"], node.get("py:module"), node.get("py:class")
    candidates = [target] + ([f"{mod}.{cls}.{target}"] if mod and cls else []) + ([f"{mod}.{target}"] if mod else [])
    for dotted in candidates:
        if not dotted.startswith("moireu."):
            continue
        obj = _lookup(dotted)
        if obj is None:
            continue
        if inspect.ismodule(obj):
            canonical = obj.__name__
        else:
            owner = getattr(obj, "__module__", None)
            qual = getattr(obj, "__qualname__", None)
            if not owner or not qual:
                continue
            canonical = f"{owner}.{qual}"
        if canonical == dotted:
            continue
        domain = env.get_domain("py")
        found = domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], canonical, node, contnode)
        if found is not None:
            return found
    return None


def setup(app) -> None:
    app.connect("missing-reference", _resolve_reexport)
    app.connect("autodoc-skip-member", _skip_foreign)
    app.connect("autodoc-skip-member", _skip_pydantic_config)
    app.connect("autodoc-process-signature", _pydantic_signature)
    app.connect("builder-inited", _write_stubs, priority=100)
    app.connect("env-check-consistency", _check_every_module_documented)
