"""superneurons: Super Neurons for categorical VQA (Musacchio et al.), on any Hugging Face VLM.

The pipeline, one module per step (data -> capture -> score -> select -> infer -> report):

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

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # data
    "Sample": "superneurons.data",
    "load_samples": "superneurons.data",
    "write_samples": "superneurons.data",
    "validate_samples": "superneurons.data",
    "balanced_sample": "superneurons.data",
    # errors
    "SuperNeuronsError": "superneurons.errors",
    "DataError": "superneurons.errors",
    "StoreError": "superneurons.errors",
    "ModelError": "superneurons.errors",
    # models and capture
    "VLM": "superneurons.models",
    "load_model": "superneurons.models",
    "capture": "superneurons.capture",
    "LayerTrace": "superneurons.capture",
    # store
    "probe": "superneurons.store",
    "ActivationStore": "superneurons.store",
    "load_activations": "superneurons.store",
    # method
    "score_neurons": "superneurons.scoring",
    "alpha_sweep": "superneurons.scoring",
    "SuperNeurons": "superneurons.selection",
    "select_super_neurons": "superneurons.selection",
    "snt_sweep": "superneurons.selection",
    "aggregate": "superneurons.aggregation",
    "agreement_rate": "superneurons.aggregation",
    "binary_metrics": "superneurons.metrics",
    "parse_pope": "superneurons.baselines",
    "model_answers": "superneurons.baselines",
    "SuperNeuronClassifier": "superneurons.classifier",
    "fit_classifier": "superneurons.classifier",
    "evaluate": "superneurons.evaluate",
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
    from superneurons.aggregation import aggregate, agreement_rate
    from superneurons.baselines import model_answers, parse_pope
    from superneurons.capture import LayerTrace, capture
    from superneurons.classifier import SuperNeuronClassifier, fit_classifier
    from superneurons.data import Sample, balanced_sample, load_samples, validate_samples, write_samples
    from superneurons.errors import DataError, ModelError, StoreError, SuperNeuronsError
    from superneurons.evaluate import evaluate
    from superneurons.metrics import binary_metrics
    from superneurons.models import VLM, load_model
    from superneurons.scoring import alpha_sweep, score_neurons
    from superneurons.selection import SuperNeurons, select_super_neurons, snt_sweep
    from superneurons.store import ActivationStore, load_activations, probe
