"""Aya Vision adapter (`AyaVisionForConditionalGeneration`): generic structure, Cohere2 decoder.

Module paths (transformers 5.x): decoder layers `model.model.language_model.layers`, final norm
`model.model.language_model.norm`, LM head `model.lm_head`; vision `model.model.vision_tower`
(SigLIP) -> `model.model.multi_modal_projector` (pixel shuffle). The prompt's `<image>` expands to
`<|START_OF_IMG|>`, tile tokens and `<|IMG_PATCH|>` tokens (the config's image token).

Cohere2 mixes sliding-window and global decoder layers, so the cascade (which resumes every upper
layer with layer L*'s attention mask) is refused. Prompt (chat template):
`<BOS_TOKEN><|START_OF_TURN_TOKEN|><|USER_TOKEN|><image>{question}<|END_OF_TURN_TOKEN|>
<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>`.
"""

from __future__ import annotations

from superneurons.models.base import VLM
from superneurons.models.registry import register_adapter
from superneurons.models.support import MIXED_ATTENTION, Support


@register_adapter("aya_vision")
class AyaVisionVLM(VLM):
    """Aya Vision: SigLIP + pixel shuffle + Cohere2 (sliding-window and global layers)."""

    family = "aya_vision"
    support = Support(cascade=False, why=MIXED_ATTENTION)
