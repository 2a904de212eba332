"""Options shared by every command that reads a classifier: a folder or a Hub id, and its Hub revision."""

from __future__ import annotations

import typer

CLASSIFIER_HELP = ("Classifier folder (written by `superneurons select`) or Hub id user/repo[/subfolder] "
                   "(see `superneurons push`).")
REVISION = typer.Option(None, "--revision", help="Hub revision (branch, tag or commit) of a Hub --classifier.")
