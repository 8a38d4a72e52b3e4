"""The ``moireu`` command line: one subcommand per stage.

Heavy imports (torch, dask, sisl) happen inside the commands so that ``moireu --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from moireu import __version__
from moireu.errors import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="moireu: Hubbard U of twisted bilayer graphene from STM maps "
                       "(TB → Hartree–Fock → STM → dataset → learning → report).")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"moireu {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """Units: Å and eV. Every command: --preset, --config, --set key=value, --out."""


def _register() -> None:
    import importlib

    for mod in ("bands", "scf", "stm", "lattice", "states", "dataset", "ml", "report", "demo", "paper"):
        try:
            m = importlib.import_module(f"moireu.cli.{mod}")
        except ModuleNotFoundError as exc:  # a stage not built yet
            if exc.name == f"moireu.cli.{mod}":
                continue
            raise
        m.register(app)


_register()


def main() -> None:
    """Console-script entry point: bad input → ``error: ...`` and exit status 2."""
    try:
        rc = app(standalone_mode=False)
    except InputError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # usage errors (click's, or the copy of click that typer vendors)
        if any(c.__name__ == "ClickException" for c in type(exc).__mro__):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(rc if isinstance(rc, int) else 0)
