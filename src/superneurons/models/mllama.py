"""Mllama adapter (Llama 3.2 Vision, `MllamaForConditionalGeneration`).

Module paths (transformers 5.x): decoder layers `model.model.language_model.layers`, self-attention
layers interleaved with cross-attention layers (`config.text_config.cross_attention_layers`) that
read the image features; final norm `model.model.language_model.norm`; LM head `model.lm_head`;
vision `model.model.vision_model` (tiled) -> `model.model.multi_modal_projector`.

The image enters only through cross-attention: `<|image|>` is one prompt token, so the image
features are not part of any token prefix. The processor wants one image list per prompt
(`nested_images`) and returns `aspect_ratio_ids`, `aspect_ratio_mask` and `cross_attention_mask`,
which `VLM.encode` keeps. Prompt (chat template):
`<|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\n<|image|>{question}<|eot_id|>
<|start_header_id|>assistant<|end_header_id|>\\n\\n`.
"""

from __future__ import annotations

from superneurons.models.base import VLM
from superneurons.models.registry import register_adapter


@register_adapter("mllama")
class MllamaVLM(VLM):
    """Mllama: a tiled ViT whose features reach the Llama decoder through cross-attention layers."""

    family = "mllama"
    nested_images = True
