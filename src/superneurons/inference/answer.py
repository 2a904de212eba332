"""`predict`: a saved classifier's answers (Alg. 2), with the cascade when a margin is set.

The classifier answers from its SNs with early exit at L* (`SuperNeuronClassifier.predict`);
with `cascade_margin=m` the samples whose SN score is unsure (|s - 0.5| < m) resume the same
forward to the model's first-token answer (`superneurons.inference.cascade`). The CLI's
`predict` and `evaluate` go through here.

    >>> out = predict(clf, vlm, samples, InferConfig(cascade_margin=0.2))   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from superneurons.config import InferConfig, configure
from superneurons.inference.cascade import cascade_predict

if TYPE_CHECKING:
    from superneurons.data.samples import Sample
    from superneurons.inference.classifier import ClassifierOutput, SuperNeuronClassifier
    from superneurons.models.base import VLM


def predict(clf: SuperNeuronClassifier, vlm: VLM, samples: Sequence[Sample], config: InferConfig | None = None, *,
            progress: bool = False, **options: Any) -> ClassifierOutput:
    """Answer every sample: SNs with early exit, or the cascade (a `CascadeOutput`) with `cascade_margin`.

    Settings: `config` and/or `InferConfig` fields as keywords (`aggregation`, `batch_size`,
    `strict`, `cascade_margin`).
    """
    cfg = configure(InferConfig, config, options)
    if cfg.cascade_margin is not None:
        return cascade_predict(clf, vlm, samples, cfg.cascade_margin, cfg.batch_size, cfg.aggregation, cfg.strict,
                               progress)
    return clf.predict(vlm, samples, batch_size=cfg.batch_size, aggregation=cfg.aggregation, progress=progress,
                       strict=cfg.strict)
