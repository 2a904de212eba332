"""superneurons: Super Neurons for categorical VQA (Musacchio et al.), on any Hugging Face VLM.

The pipeline, one subpackage per step (data -> capture -> scoring -> selection -> inference ->
evaluation -> report):

    >>> from superneurons import load_model, load_samples, probe, fit_classifier     # doctest: +SKIP
    >>> vlm = load_model("llava-hf/llava-1.5-7b-hf")                                # doctest: +SKIP
    >>> store = probe(vlm, load_samples("probe.jsonl"), "acts/")                      # Alg. 1 (capture)
    >>> clf = fit_classifier(store, metric="accuracy").classifier                    # Alg. 1 (score, select)
    >>> out = clf.predict(vlm, load_samples("val.jsonl"))                              # Alg. 2, early exit at L*

Public API only. Importing this package has no side effects and does not import torch: the
names below are resolved on first use, so `superneurons --help` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from superneurons.constants import __version__

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # data
    "Sample": "superneurons.data",
    "load_samples": "superneurons.data",
    "write_samples": "superneurons.data",
    "validate_samples": "superneurons.data",
    "balanced_sample": "superneurons.data",
    # errors and settings
    "SuperNeuronsError": "superneurons.errors",
    "DataError": "superneurons.errors",
    "StoreError": "superneurons.errors",
    "ModelError": "superneurons.errors",
    "ConfigError": "superneurons.errors",
    "InUseError": "superneurons.errors",
    "CaptureConfig": "superneurons.config",
    "ScoreConfig": "superneurons.config",
    "SelectConfig": "superneurons.config",
    "InferConfig": "superneurons.config",
    # models and capture
    "VLM": "superneurons.models",
    "load_model": "superneurons.models",
    "capture": "superneurons.activations",
    "LayerTrace": "superneurons.activations",
    "probe": "superneurons.activations",
    "ActivationStore": "superneurons.activations",
    "load_activations": "superneurons.activations",
    # method
    "score_neurons": "superneurons.scoring",
    "alpha_sweep": "superneurons.scoring",
    "binary_metrics": "superneurons.scoring",
    "SuperNeurons": "superneurons.selection",
    "select_super_neurons": "superneurons.selection",
    "snt_sweep": "superneurons.selection",
    "aggregate": "superneurons.inference",
    "agreement_rate": "superneurons.inference",
    "SuperNeuronClassifier": "superneurons.inference",
    "fit_classifier": "superneurons.inference",
    "predict": "superneurons.inference",
    "predict_to_file": "superneurons.inference",
    "parse_pope": "superneurons.evaluation",
    "evaluate": "superneurons.evaluation",
    # the whole study (Tab. 1-5, figures, report) from a study file
    "run_study": "superneurons.study",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'superneurons' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # for type checkers and IDEs
    from superneurons.activations import ActivationStore, LayerTrace, capture, load_activations, probe
    from superneurons.config import CaptureConfig, InferConfig, ScoreConfig, SelectConfig
    from superneurons.data import Sample, balanced_sample, load_samples, validate_samples, write_samples
    from superneurons.errors import (
        ConfigError,
        DataError,
        InUseError,
        ModelError,
        StoreError,
        SuperNeuronsError,
    )
    from superneurons.evaluation import evaluate, parse_pope
    from superneurons.inference import (
        SuperNeuronClassifier,
        aggregate,
        agreement_rate,
        fit_classifier,
        predict,
        predict_to_file,
    )
    from superneurons.models import VLM, load_model
    from superneurons.scoring import alpha_sweep, binary_metrics, score_neurons
    from superneurons.selection import SuperNeurons, select_super_neurons, snt_sweep
    from superneurons.study import run_study
