"""Shared CLI plumbing: config options, run directories, error handling.

Every stage command takes ``--preset NAME``, ``--config FILE.toml``, ``--set key=value`` (repeatable)
and ``--out DIR``. Invalid input raises :class:`moireu.errors.InputError`; :func:`main` turns it into
``error: ...`` on stderr and exit status 2.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from moireu.config import MoireuConfig, load_config, save_resolved
from moireu.errors import InputError

PresetOpt = typer.Option("demo", "--preset", "-p", help="shipped preset: demo or paper (none: the --config file "
                         "alone, e.g. a run's resolved config.toml)")
ConfigOpt = typer.Option(None, "--config", "-c", help="TOML file merged over the preset")
SetOpt = typer.Option(None, "--set", "-s", help="override, e.g. --set hf.U=4.0 (repeatable)")
JsonOpt = typer.Option(False, "--json", help="print a JSON summary on stdout")
ForceOpt = typer.Option(False, "--force", help="overwrite a finished run in --out")
#: how a user's map file is read (moireu predict, moireu lattice): one definition of each option
PixelSizeOpt = typer.Option(None, "--pixel-size", help="Å per pixel: 'p' or 'px,py'")
ChannelOpt = typer.Option(None, "--channel", help="channel of a .sxm/.3ds/.gwy/.sm4 file")
DirectionOpt = typer.Option("forward", "--direction", help=".sxm/.sm4 scan (.3ds sweep) direction: forward or backward")
BiasOpt = typer.Option(None, "--bias", help="V: the map of a .3ds grid at the sweep point nearest this bias "
                       "(default: nearest 0 V)")


def preset_name(preset: Optional[str]) -> Optional[str]:
    """The preset asked for, or None for ``none`` / empty (the --config file alone)."""
    return None if preset in (None, "", "none") else preset


def resolve(preset: Optional[str], config: Optional[Path], overrides: Optional[List[str]]) -> MoireuConfig:
    """Preset → file → overrides → validated config (preset ``none`` or empty: the file alone)."""
    return load_config(preset_name(preset), config, list(overrides or []))


def prepare_run_dir(out: Path, cfg: MoireuConfig, marker: str, force: bool = False,
                    extra: dict[str, Any] | None = None) -> Path:
    """Create ``out`` and store the resolved config + provenance in it.

    ``marker`` names the file whose presence means the run is finished; a finished run is never
    overwritten unless ``force``.
    """
    out = Path(out)
    if (out / marker).exists() and not force:
        raise InputError(f"{str(out)!r} already holds a finished run ({marker}); use --force to overwrite "
                         "or choose another --out")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        save_resolved(cfg, out, extra)
    except OSError as exc:
        raise InputError(f"cannot write to --out {str(out)!r}: {exc.strerror or exc}; choose a writable "
                         "location") from None
    return out


def emit_json(obj: Any) -> None:
    """Print one JSON document on stdout (the machine-readable channel)."""
    from moireu.provenance import _json_default

    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def info(msg: str) -> None:
    """Human progress/info on stderr (keeps stdout clean for --json)."""
    typer.echo(msg, err=True)


def fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def which_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None
