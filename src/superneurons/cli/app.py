"""The `superneurons` command: a thin typer app; each command lives in its own module.

Commands register themselves by being imported here; heavy imports (torch, transformers) stay
inside the command functions so `superneurons --help` is fast.
"""

from __future__ import annotations

import typer

app = typer.Typer(name="superneurons", no_args_is_help=True, add_completion=False,
                  help="Find Super Neurons in a VLM and answer yes/no visual questions with early exit.")

# Each command module defines `register(app)`; add one line per module (keep alphabetical).
_COMMAND_MODULES: list[str] = [
    "bench",
    "cascade",
    "datasets",
    "demo",
    "evaluate",
    "experiment",
    "models",
    "predict",
    "probe",
    "push",
    "report",
    "select",
    "study",
    "synth",
]


@app.command()
def version() -> None:
    """Print the library version."""
    from superneurons.constants import __version__

    typer.echo(__version__)


def _register_all() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(f"superneurons.cli.{name}").register(app)


def main() -> None:
    """Entry point of the console script; user-facing errors print without a traceback."""
    from rich.console import Console
    from rich.markup import escape

    from superneurons.errors import SuperNeuronsError

    _register_all()
    try:
        app()
    except SuperNeuronsError as exc:  # printed literally: a path or value may hold "[/...]"
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}")
        raise SystemExit(2) from None
