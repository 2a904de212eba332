"""How the model under study was trained, in one sentence for the report's summary (or None).

`training` is the model folder's `training.json` as the study stores it in results.json
(`model_training`); a model without one (a hub checkpoint) has nothing to disclose.
"""

from __future__ import annotations

from typing import Any


def training_disclosure(training: dict[str, Any] | None) -> str | None:
    """The sentence disclosing how the model was trained, or None when there is nothing to say."""
    if not training:
        return None
    return training.get("disclosure")
