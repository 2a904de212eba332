"""Generic adapter: any `AutoModelForImageTextToText` model with an `AutoProcessor`.

Used for model types without a dedicated adapter (or forced with `load_model(..., adapter="auto")`). The decoder layers are looked up at
`model.model.language_model.layers`, then `model.get_decoder().layers`; a model that keeps them
elsewhere raises a ModelError asking for a dedicated adapter.
"""

from __future__ import annotations

from superneurons.models.base import VLM, register_adapter


@register_adapter("auto")
class AutoVLM(VLM):
    """Fallback for image-text-to-text models with a standard layout."""

    family = "auto"
