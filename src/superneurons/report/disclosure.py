"""One sentence on what a model's training did to its layers, for the report's summary.

A model folder may ship a `training.json` (the demo VLM does; `scripts/train_demo_vlm.py` writes it)
that declares every training loss and head: what it reads (``"image tokens"``, ``"answer position
(LM loss only)"``, ``"answer position"``), after which decoder layer, with what weight, and whether
its target holds the answer. A head that reads the answer position, or trains image tokens to carry
the answer, can plant Super Neurons; the sentence says which layers that concerns, so that a reader
does not take an early exit the training put there for one that emerged.
"""

from __future__ import annotations

from typing import Any

ANSWER_POSITION = "answer position"
LM_ONLY = "answer position (LM loss only)"
IMAGE_TOKENS = "image tokens"


def _at(h: dict[str, Any]) -> str:
    layer = h.get("layer")
    where = f"after decoder layer {layer}" if isinstance(layer, int) else f"at the {layer}" if layer else ""
    return f"{h.get('name', '?')} {where}".strip()


def training_disclosure(training: dict[str, Any] | None) -> str | None:
    """The summary sentence for a model's declared training heads; None when nothing is declared.

    `training` is a model folder's `training.json` (as stored in `results["model_training"]`). With
    no `heads` list, a ready-made `disclosure` string in it is returned as is.
    """
    if not training:
        return None
    heads = [h for h in training.get("heads", []) if isinstance(h, dict)]
    if not heads:
        return training.get("disclosure")
    planted = [h for h in heads if h.get("reads") == ANSWER_POSITION]
    if planted:
        layers = [h["layer"] for h in planted if isinstance(h.get("layer"), int)]
        upto = f" at layers <= {max(layers)}" if layers else ""
        return (f"This model was trained with heads reading the answer position ({'; '.join(map(_at, planted))}): "
                f"Super Neurons found{upto} are partly planted by training, not emerged.")
    image = [h for h in heads if h.get("reads") == IMAGE_TOKENS]
    listed = f" ({'; '.join(map(_at, image))})" if image else ""
    sentence = (f"This model was trained with heads on image tokens only{listed}; nothing but the LM loss reads "
                "the answer position, so SNs there were not planted by any head")
    carry = [h["layer"] for h in image if h.get("answer") and isinstance(h.get("layer"), int)]
    if carry:
        k = min(carry)
        sentence += (f", though image tokens after layer {k} were trained to carry the answer, which the answer "
                     f"position can copy from layer {k + 1} on")
    notes = [h["note"] for h in image if h.get("note")]
    return sentence + "." + "".join(f" Note: {n}." for n in notes)
