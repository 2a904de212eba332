"""`superneurons models`: the family table, the same as the README's and the conformance suite's."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from superneurons.cli import models as models_cli
from superneurons.models.registry import CHECKED_FAMILIES, family_markdown, family_table

README = Path(__file__).resolve().parents[2] / "README.md"
START = "<!-- family table:"
END = "<!-- end of family table -->"


def _app() -> typer.Typer:
    app = typer.Typer()
    models_cli.register(app)

    @app.command()
    def _other() -> None:  # a second command keeps `models` a named subcommand
        pass

    return app


def test_readme_table_is_the_cli_table():
    text = README.read_text(encoding="utf-8")
    block = text[text.index(START):text.index(END)].split("\n", 1)[1].strip()
    result = CliRunner().invoke(_app(), ["models", "--markdown"])
    assert result.exit_code == 0, result.output
    assert block == result.output.strip() == family_markdown()


def test_table_lists_every_checked_family_with_its_adapter_and_support():
    rows = {r["model_type"]: r for r in family_table()}
    assert list(rows)[:len(CHECKED_FAMILIES)] == list(CHECKED_FAMILIES)
    assert rows["llava"]["adapter"] == "LlavaVLM" and rows["llava_next"]["adapter"] == "VLM"
    assert not rows["gemma3"]["cascade"] and not rows["paligemma"]["prefix_reuse"]
    assert rows["mistral3"]["blocked"] and "torchvision" in rows["mistral3"]["blocked"]
    result = CliRunner().invoke(_app(), ["models"], env={"COLUMNS": "250"})
    assert result.exit_code == 0 and "generic VLM path" in result.output
    assert all(mt in result.output for mt in CHECKED_FAMILIES)
