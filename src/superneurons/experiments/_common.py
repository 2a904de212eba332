"""What every experiment shares: datasets, options, results and plotting.

- `Dataset(name, probe, val)`: a named probing set and validation set (lists of `Sample`).
- `ExperimentOptions`: the settings common to all experiments (token, alpha, metric, SNt sweep
  step/depth, batch size, generation budget, seed, stored dtype).
- `ExperimentResult`: one table (rows of plain numbers) + metadata + figure paths; `write(dir)`
  saves `<name>.json` and `<name>.md` and returns the paths.

The cache of model work (activation stores, generated answers) is `workspace.Workspace`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from superneurons.config import CaptureConfig, SelectConfig
from superneurons.constants import MAX_NEW_TOKENS, METRICS, SNT_DEPTH, SNT_STEP, Metric, Token
from superneurons.errors import DataError
from superneurons.scoring.metrics import binary_metrics
from superneurons.utils.files import json_text
from superneurons.utils.optional import require_matplotlib as _require_matplotlib

if TYPE_CHECKING:
    from superneurons.data.samples import Sample

RESULT_JSON = "{name}.json"
RESULT_MD = "{name}.md"
FIGURE_PNG = "{name}.png"
CACHE_DIR = "cache"
METRIC_COLUMNS: tuple[str, ...] = (*METRICS, "yes_ratio")
#: Display names of columns (paper style); others print as they are.
HEADERS: dict[str, str] = {"accuracy": "Acc.", "precision": "Prec.", "recall": "Recall", "f1": "F1",
                           "yes_ratio": "Yes %", "exit_layer": "L*", "seconds_per_sample": "s/sample",
                           "n_datasets": "#datasets", "accuracy_std": "Acc. std", "f1_std": "F1 std",
                           "early_exit": "early exit"}


# ----------------------------------------------------------------------------- inputs
@dataclass
class Dataset:
    """A named pair of labelled sample lists: `probe` (SNs are found on it) and `val` (scored on it).

    Either may be None where an experiment does not need it (e.g. the source side of `transfer`).
    """

    name: str
    probe: list[Sample] | None = None
    val: list[Sample] | None = None

    def __post_init__(self) -> None:
        for split in ("probe", "val"):
            samples = getattr(self, split)
            if samples is None:
                continue
            if not samples:
                raise DataError(f"dataset {self.name!r}: the {split} set is empty; pass at least 2 labelled samples")
            unlabelled = [s.id for s in samples if s.label is None]
            if unlabelled:
                raise DataError(f"dataset {self.name!r}: {split} sample(s) {unlabelled[:5]} have no label; "
                                "experiments compare answers with yes/no labels")

    def need(self, split: str, experiment: str) -> list[Sample]:
        samples = getattr(self, split)
        if samples is None:
            raise DataError(f"experiment {experiment!r} needs a {split} set for dataset {self.name!r}; "
                            f"pass --{split} FILE")
        return samples


@dataclass
class ExperimentOptions:
    """Settings shared by every experiment (paper defaults).

    `token`: activation position ("first": the last prompt position, paper Tab. 6's best);
    `alpha`: activation threshold (paper: 0); `metric`: what SNs are optimised for; `step`/`depth`:
    the SNt sweep grid (0.01 = 1 point for LLaVA, 0.001 for Qwen) and how far below the best
    neuron it goes; `max_new_tokens`: the model baseline's generation budget (paper: 128);
    `store_dtype`: how cached activations are stored.
    """

    token: Token = "first"
    alpha: float = 0.0
    metric: Metric = "accuracy"
    step: float = SNT_STEP
    depth: float = SNT_DEPTH
    batch_size: int = 8
    max_new_tokens: int = MAX_NEW_TOKENS
    seed: int = 0
    store_dtype: str = "float16"
    progress: bool = False

    def __post_init__(self) -> None:  # the step configs validate every field they share
        CaptureConfig(token=self.token, batch_size=self.batch_size, max_new_tokens=self.max_new_tokens,  # type: ignore[arg-type]
                      dtype=self.store_dtype)  # type: ignore[arg-type]
        SelectConfig(metric=self.metric, step=self.step, depth=self.depth)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- results
@dataclass
class ExperimentResult:
    """One experiment's table: `rows` of plain values, shown in `columns` order.

    Columns named in `percent` hold fractions in [0, 1] and print as percentages (paper style);
    the JSON keeps the raw fractions. `figures` are the plots written (PNG), `files` what
    `write` wrote.
    """

    name: str
    title: str
    paper: str
    columns: list[str]
    rows: list[dict[str, Any]]
    percent: tuple[str, ...] = METRIC_COLUMNS
    meta: dict[str, Any] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def cell(self, row: dict[str, Any], col: str) -> str:
        """The display string of one cell."""
        v = row.get(col)
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            if col in self.percent:
                return f"{100 * v:.1f}"
            return f"{v:.4g}"
        return str(v)

    @staticmethod
    def header(col: str) -> str:
        """The display name of a column (paper style: Acc., Prec., Recall, F1, L*)."""
        return HEADERS.get(col, col)

    def to_markdown(self) -> str:
        lines = [f"## {self.title}", "", f"Paper: {self.paper}.", ""]
        lines.append("| " + " | ".join(self.header(c) for c in self.columns) + " |")
        lines.append("|" + "---|" * len(self.columns))
        for r in self.rows:
            lines.append("| " + " | ".join(self.cell(r, c) for c in self.columns) + " |")
        if any(c in self.percent for c in self.columns):
            lines += ["", "Metrics in %."]
        for fig in self.figures:
            lines += ["", f"![{self.name}]({fig.name})"]
        notes = self.meta.get("notes")
        if notes:
            lines += [""] + [f"- {n}" for n in notes]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "paper": self.paper, "columns": self.columns,
                "rows": self.rows, "meta": self.meta, "figures": [f.name for f in self.figures]}

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write `<name>.json` and `<name>.md` into `out_dir`; return both paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        js, md = out / RESULT_JSON.format(name=self.name), out / RESULT_MD.format(name=self.name)
        js.write_text(json_text(self.to_dict(), 1, default=_jsonable) + "\n", encoding="utf-8")
        md.write_text(self.to_markdown(), encoding="utf-8")
        self.files = [js, md, *self.figures]
        return [js, md]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Tensor):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def finish(result: ExperimentResult, out_dir: str | Path | None) -> ExperimentResult:
    """Write the result when an output folder is given; return it."""
    if out_dir is not None:
        result.write(out_dir)
    return result


def metric_row(preds: Tensor | Sequence[int], labels: Tensor | Sequence[int], /, **cols: Any) -> dict[str, Any]:
    """A table row: `cols` + accuracy, precision, recall, F1, yes-ratio and n of `preds` vs `labels`."""
    m = binary_metrics(preds, labels)
    return {**cols, **{k: m[k] for k in METRIC_COLUMNS}, "n": m["n"]}


def labels_of(samples: Sequence[Sample]) -> Tensor:
    return torch.tensor([s.y for s in samples], dtype=torch.long)


# ----------------------------------------------------------------------------- plotting
def require_matplotlib(experiment: str) -> Any:
    """matplotlib's `Figure`, or a clear error naming the pip extra (and how to skip the plot)."""
    return _require_matplotlib(f"the plot of experiment {experiment!r}", " (or pass plot=False / --no-plot)")


def new_figure(width: float, height: float, ncols: int = 1, nrows: int = 1) -> tuple[Any, Any]:
    """A matplotlib `Figure` (no pyplot, no global backend state) and its axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False)

