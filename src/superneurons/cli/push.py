"""`superneurons push`: publish a classifier on the Hugging Face Hub with its model card.

    superneurons push CLF REPO_ID [--subfolder NAME] [--private] [--metrics metrics.json]
        [--token T] [--message MSG] [--revision R]

As SAELens shares SAEs: one repo, one subfolder per classifier. The classifier files and a
README.md card (library_name superneurons, base_model the probed model, its probe metrics, the
validation metrics of `superneurons evaluate --out` given by --metrics, the exact prompt
template) go into REPO_ID/NAME. Log in first (`hf auth login`) or pass --token.
"""

from __future__ import annotations

from pathlib import Path

import typer

from superneurons.cli.hub_options import CLASSIFIER_HELP, REVISION


def push_command(
    classifier: str = typer.Argument(..., help=CLASSIFIER_HELP),
    repo_id: str = typer.Argument(..., help="Hub repo to push to (user/repo; created if missing)."),
    subfolder: str | None = typer.Option(None, "--subfolder", help="Folder in the repo for this classifier "
                                         "(e.g. pope); default: the repo root."),
    private: bool = typer.Option(False, "--private", help="Create the repo private (an existing repo keeps its "
                                 "visibility)."),
    metrics: Path | None = typer.Option(None, "--metrics", help="Validation metrics for the card: the JSON of "
                                        "`superneurons evaluate --out`."),
    token: str | None = typer.Option(None, "--token", help="Hub token with write access (default: the logged-in "
                                     "one)."),
    message: str | None = typer.Option(None, "--message", help="Commit message."),
    revision: str | None = REVISION,
) -> None:
    """Push a classifier and its model card to the Hugging Face Hub."""
    from rich.console import Console
    from rich.markup import escape

    from superneurons.errors import DataError
    from superneurons.inference.classifier import SuperNeuronClassifier
    from superneurons.utils.files import read_json

    clf = SuperNeuronClassifier.from_pretrained(classifier, revision=revision)
    if metrics is not None and not metrics.is_file():
        raise DataError(f"--metrics {metrics}: no such file; write it with `superneurons evaluate --out`")
    values = read_json(metrics, DataError, "write it with `superneurons evaluate --out`") if metrics else None
    info = clf.push_to_hub(repo_id, subfolder=subfolder, private=private, token=token, metrics=values,
                           commit_message=message)
    Console().print(f"[green]pushed[/] K={clf.sns.k} SNs (L*={clf.exit_layer}) to {escape(repo_id)}"
                    f"{'/' + subfolder if subfolder else ''}: {getattr(info, 'commit_url', info)}")


def register(app: typer.Typer) -> None:
    """Add `push` to the app."""
    app.command("push")(push_command)
