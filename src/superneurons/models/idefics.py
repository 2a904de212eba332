"""SmolVLM adapter (`SmolVLMForConditionalGeneration`); Idefics2 / Idefics3 take the generic path.

Module paths (transformers 5.x): decoder layers `model.model.text_model.layers` (the generic
lookup finds them through `model.get_decoder()`), final norm `model.model.text_model.norm`, LM
head `model.lm_head`; vision `model.model.vision_model` -> `model.model.connector` (pixel shuffle).

The SmolVLM processor wants one image list per prompt (`nested_images`) and holds a video
processor (built image-only without torchvision: its chat template reads the saved
`video_processor.num_frames` / `fps`). Prompt (chat template):
`<|im_start|>User:<image>{question}<end_of_utterance>\\nAssistant:`.
"""

from __future__ import annotations

from superneurons.models.base import VLM
from superneurons.models.registry import register_adapter


@register_adapter("smolvlm")
class SmolVLM(VLM):
    """SmolVLM: SigLIP + pixel-shuffle connector + SmolLM decoder."""

    family = "smolvlm"
    nested_images = True
