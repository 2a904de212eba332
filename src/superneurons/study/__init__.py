"""The paper's whole study as one resumable run: a study file in, the report out (`superneurons study`).

| module | what it owns |
|---|---|
| spec.py | the study file (TOML): `load_study`, `parse_study`, `StudySpec`, `study_toml` (writing one) |
| data.py | each dataset's probing / validation samples: its files, or `datasets prepare` run once under DIR |
| steps.py | `StepCache` (finished steps keyed by their inputs, a journal) and the progress bars |
| per_dataset.py | one dataset's probe, select (SNt sweep, early-exit sets) and evaluate steps |
| extras.py | the experiments, the cascade sweep and the runtime bench |
| run.py | `run_study` (the driver, then the report) and `rebuild_report` (from results.json) |

    >>> from superneurons.study import run_study        # doctest: +SKIP
    >>> run_study("examples/llava-1.5-7b.toml", "out")   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "StudySpec": "spec", "StudyOptions": "spec", "StudyDataset": "spec", "load_study": "spec", "parse_study": "spec",
    "study_toml": "spec", "StepCache": "steps", "run_study": "run", "rebuild_report": "run",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"superneurons.study.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'superneurons.study' has no attribute {name!r}")
