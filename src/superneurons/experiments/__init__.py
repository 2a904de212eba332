"""The paper's comparisons and ablations as runnable experiments, one module per experiment.

| name | module | paper |
|---|---|---|
| savs | savs.py: Sparse Attention Vectors vs SNs at the same N | Tab. 3 |
| nshot | nshot.py: n-shot prompting (examples with images) vs SNs | Tab. 8 |
| prompts | prompts.py: key word replaced by alternatives / random strings | App. Tab. 5 |
| shuffled | shuffled.py: images / questions shuffled across pairs | App. Tab. 6 |
| transfer | transfer.py: probe on one dataset, validate on another | Tab. 7 |
| metric | metric.py: SNs optimised for accuracy / F1 / precision / recall | Tab. 9 |
| token | token.py: first vs last token, L*, time per sample | Tab. 6 |
| overlap | overlap.py: neurons beating the model on several datasets | App. Fig. 2 |
| probe-size | probe_size.py: metrics vs probing set size | Fig. 5 |

    >>> from superneurons.experiments import run_experiment                        # doctest: +SKIP
    >>> res = run_experiment("savs", vlm, probe=probe, val=val, out_dir="exp/")   # doctest: +SKIP
    >>> print(res.to_markdown())                                                   # doctest: +SKIP

Shared pieces live in `_common.py` (Dataset, ExperimentOptions, ExperimentResult) and
`workspace.py` (Workspace: the cache of model work),
the registry in `registry.py`, the demo-model runs in `demo.py`. Names other than the registry's
are imported on first use, so importing this package (e.g. for the CLI's help) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from superneurons.experiments.registry import (
    EXPERIMENTS,
    Experiment,
    as_datasets,
    experiment_names,
    get_experiment,
    run_experiment,
)

_LAZY: dict[str, str] = {
    "Dataset": "_common", "ExperimentOptions": "_common", "ExperimentResult": "_common", "StoreView": "workspace",
    "Workspace": "workspace", "run_demo_experiments": "demo", "SparseAttentionVectors": "savs",
    "fit_savs": "savs", "head_outputs": "savs", "fewshot_messages": "nshot", "fewshot_prompt": "nshot",
    "prepare_fewshot": "nshot", "replace_word": "prompts", "shuffle_pairs": "shuffled", "pairs_kept": "shuffled",
    "pairs_in_original": "shuffled",
    "overlap_from_scores": "overlap", "plot_probe_size": "probe_size",
}

__all__ = ["EXPERIMENTS", "Experiment", "as_datasets", "experiment_names", "get_experiment", "run_experiment",
           *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"superneurons.experiments.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'superneurons.experiments' has no attribute {name!r}")
