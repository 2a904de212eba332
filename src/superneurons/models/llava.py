"""LLaVA-1.5 adapter (`LlavaForConditionalGeneration`, e.g. llava-hf/llava-1.5-7b-hf).

Module paths (transformers 5.x):
- decoder layers: `model.model.language_model.layers` (a `LlamaDecoderLayer` ModuleList; also
  `model.get_decoder().layers`); each returns the residual stream as a tensor (older versions: a tuple).
- final norm: `model.model.language_model.norm`; LM head: `model.lm_head`.
- vision: `model.model.vision_tower` (CLIP) -> `model.model.multi_modal_projector`.

Prompt (llava-hf chat template): `USER: <image>\\n{question} ASSISTANT:`.
"""

from __future__ import annotations

from superneurons.models.base import VLM
from superneurons.models.registry import register_adapter


@register_adapter("llava")
class LlavaVLM(VLM):
    """LLaVA-1.5: CLIP ViT-L/336 + projector + Llama/Vicuna decoder."""

    family = "llava"
