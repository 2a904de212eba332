"""Inference (Alg. 2): answer yes/no from a few Super Neuron activations, with early exit at L*.

| module | owns |
|---|---|
| aggregation.py | vote / mean / fraction of the K SN activations, the agreement rate (eq. 7) |
| classifier.py | `SuperNeuronClassifier` (save / load / predict / from_pretrained / push_to_hub), `fit_classifier`, prediction files |
| saved.py | checks of a saved classifier's files on load (readable, complete, finite, valid fields) |
| hub.py | Hugging Face Hub I/O: a classifier's snapshot (one subfolder per classifier), its model card, the push |
| cascade.py | SNs when sure, the same forward resumed to the model's answer when not |
| answer.py | `predict`: the classifier, or the cascade when a margin is set |
"""

from superneurons.inference.aggregation import aggregate, agreement_rate, sn_margins, sn_votes
from superneurons.inference.answer import predict
from superneurons.inference.cascade import CascadeOutput, calibrate_cascade, cascade_predict
from superneurons.inference.classifier import (
    ClassifierOutput,
    FitResult,
    SuperNeuronClassifier,
    fit_classifier,
    write_predictions,
)

__all__ = ["CascadeOutput", "ClassifierOutput", "FitResult", "SuperNeuronClassifier", "aggregate",
           "agreement_rate", "calibrate_cascade", "cascade_predict", "fit_classifier", "predict", "sn_margins",
           "sn_votes", "write_predictions"]
