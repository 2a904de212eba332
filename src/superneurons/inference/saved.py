"""Checks of a saved classifier's two files before they are trusted (`SuperNeuronClassifier.load`).

A classifier folder holds `classifier.json` (what the SNs were found with) and
`classifier.safetensors` (the SN indices, thresholds, rules, scores). A damaged, truncated or
hand-edited file must be refused with its name and the fix, never read into a classifier that
answers wrongly: `alpha: NaN` would answer "no" to everything. Indices against the model's
layers and hidden size are checked by the classifier itself (`__post_init__`, `check_compatible`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from superneurons.errors import DataError

_FIX = "select again to rewrite it (or copy the classifier folder again)"
_REQUIRED = {"fingerprint": dict, "prompt_template": str, "k": int}


def check_config(path: Path, cfg: Any, version: int) -> None:
    """Raise a DataError naming `path` unless `cfg` is a classifier config of format `version`."""
    if not isinstance(cfg, dict):
        raise DataError(f"{path} holds a JSON {type(cfg).__name__}, not a classifier config; {_FIX}")
    if cfg.get("format_version") != version:
        raise DataError(f"{path}: classifier format {cfg.get('format_version')!r} is not {version}; "
                        "select again with this library version")
    for key, kind in _REQUIRED.items():
        if not isinstance(cfg.get(key), kind) or isinstance(cfg.get(key), bool):
            what = "missing" if key not in cfg else f"a {type(cfg[key]).__name__}, not a {kind.__name__}"
            raise DataError(f"{path}: field {key!r} is {what}; the file is damaged or not a classifier: {_FIX}")
    for key in ("num_layers", "hidden_size"):
        if not isinstance(cfg["fingerprint"].get(key), int):
            raise DataError(f"{path}: fingerprint.{key} is missing or not an integer; {_FIX}")


def read_tensors(path: Path, cfg: dict[str, Any], version: int, names: Sequence[str],
                 config_path: Path | None = None) -> dict[str, torch.Tensor]:
    """The classifier tensors of `path`, checked: readable, all present, one value per SN, finite."""
    from safetensors.torch import load_file

    check_config(config_path or path.with_suffix(".json"), cfg, version)
    try:
        t = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for a truncated or foreign file
        raise DataError(f"{path} cannot be read as safetensors ({type(exc).__name__}: {exc}); the file is damaged "
                        f"(truncated?): {_FIX}") from None
    missing = [k for k in names if k not in t]
    if missing:
        raise DataError(f"{path} lacks tensor(s) {missing}; the file is damaged: {_FIX}")
    if len({t[k].numel() for k in names}) != 1 or t[names[0]].numel() != cfg["k"]:
        raise DataError(f"{path}: tensors disagree on the number of SNs (config says k={cfg['k']}); "
                        f"the files do not belong together: {_FIX}")
    for key in ("layers", "neurons", "rule"):
        if t[key].is_floating_point():
            raise DataError(f"{path}: tensor {key!r} holds floats ({t[key].dtype}), not integers; {_FIX}")
    for key in ("alpha", "scores"):
        bad = ~torch.isfinite(t[key].double())
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise DataError(f"{path}: {key} of SN {i} (layer {int(t['layers'][i])}, neuron {int(t['neurons'][i])}) "
                            f"is {float(t[key][i])}, not a finite number; {_FIX}")
    return t
