"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL adapters (`Qwen{2,2_5,3}VLForConditionalGeneration`).

Module paths (transformers 5.x):
- decoder layers: `model.model.language_model.layers` (also `model.get_decoder().layers`).
- final norm: `model.model.language_model.norm`; LM head: `model.lm_head`.
- vision: `model.model.visual` (merges 2x2 patches into one image token).

Positions are 3-D multimodal RoPE ("mrope"), computed inside the model from `input_ids`,
`mm_token_type_ids`, `image_grid_thw` and the attention mask, so left padding is handled there.
Qwen3-VL adds DeepStack visual features to the first layers' outputs at image-token positions
only; the last prompt position is a text token, so the hooked layer output is what the next layer
reads there.

Prompt (ChatML): `<|im_start|>user\\n<|vision_start|><|image_pad|><|vision_end|>{question}<|im_end|>\\n
<|im_start|>assistant\\n`.

Qwen processors need torchvision for their video processor. Images are all this library feeds,
so without torchvision the processor is built image-only (`image_only_processor`).
"""

from __future__ import annotations

from typing import Any

from superneurons.models.base import VLM, register_adapter

_PROCESSOR_CLASSES = {"qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor",
                      "qwen3_vl": "Qwen3VLProcessor"}


def image_only_processor(model_type: str) -> type:
    """The family's processor class without its video processor (which needs torchvision)."""
    import transformers

    base = getattr(transformers, _PROCESSOR_CLASSES[model_type])

    def __init__(self: Any, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None,
                 **kwargs: Any) -> None:
        base.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    return type(base.__name__, (base,), {"__init__": __init__, "__module__": __name__})


def load_processor(model_type: str, name_or_path: str, **kwargs: Any) -> Any:
    """`AutoProcessor` when torchvision is installed, else the image-only processor."""
    from transformers import AutoProcessor
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        return AutoProcessor.from_pretrained(name_or_path, **kwargs)
    return image_only_processor(model_type).from_pretrained(name_or_path, **kwargs)


@register_adapter(*_PROCESSOR_CLASSES)
class QwenVLM(VLM):
    """Qwen2-VL / Qwen2.5-VL / Qwen3-VL."""

    family = "qwen_vl"

    @classmethod
    def load_processor(cls, model_type: str, name_or_path: str, **kwargs: Any) -> Any:
        return load_processor(model_type, name_or_path, **kwargs)
