"""Qwen2-VL, Qwen2.5-VL, Qwen3-VL and GLM-4V adapters (`Qwen{2,2_5,3}VLForConditionalGeneration`,
`Glm4vForConditionalGeneration`, which shares Qwen2-VL's multimodal RoPE).

Module paths (transformers 5.x):
- decoder layers: `model.model.language_model.layers` (also `model.get_decoder().layers`).
- final norm: `model.model.language_model.norm`; LM head: `model.lm_head`.
- vision: `model.model.visual` (merges 2x2 patches into one image token).

Positions are 3-D multimodal RoPE ("mrope"), computed inside the model from `input_ids`,
`mm_token_type_ids`, `image_grid_thw` and the attention mask, so left padding is handled there;
`rope_positions` gets them from the model's own `get_rope_index` (prefix reuse needs the
positions of a suffix after a cached prefix). The decoder layers receive them as
`position_ids` [3, B, S] (Qwen3: [4, B, S]) and `position_embeddings` [3, B, S, d]: batch on axis 1.

Qwen3-VL adds DeepStack visual features to the outputs of its first decoder layers at image-token
positions, inside the language model's loop (after the layer hook fires). The last prompt position
is a text token, so a hooked layer output is what the next layer reads there; a resumed forward
replays the features (`DeepStackReplay`), so resuming is exact at every layer.

Prompt (ChatML): `<|im_start|>user\\n<|vision_start|><|image_pad|><|vision_end|>{question}<|im_end|>\\n
<|im_start|>assistant\\n`.

Qwen processors hold a video processor (torchvision); without torchvision the base loader builds
them image-only (`superneurons.models.processors`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from superneurons.errors import ModelError
from superneurons.models.base import VLM, LayerReplay
from superneurons.models.registry import register_adapter

if TYPE_CHECKING:
    import torch


@register_adapter("qwen2_vl", "qwen2_5_vl")
class QwenVLM(VLM):
    """Qwen2-VL / Qwen2.5-VL (and the base of Qwen3-VL)."""

    family = "qwen_vl"
    multimodal_rope = True

    def rope_positions(self, enc: Any) -> torch.Tensor | None:
        """Multimodal RoPE positions [3, B, S] of a prepared batch (`get_rope_index`), or None."""
        mm = enc.get("mm_token_type_ids")
        if enc.get("image_grid_thw") is None or mm is None:
            return None
        pos, _ = self.model.model.get_rope_index(input_ids=enc["input_ids"], mm_token_type_ids=mm,
                                                 image_grid_thw=enc["image_grid_thw"],
                                                 attention_mask=enc["attention_mask"])
        return pos


class DeepStackReplay(LayerReplay):
    """Records the DeepStack inputs the language model is called with and adds them back after the
    layers they belong to. A forward pre-hook on the language model keeps `visual_pos_masks` [B, S] and
    `deepstack_visual_embeds` (one [n_visual, D] tensor per early layer)."""

    def __init__(self, lm: torch.nn.Module) -> None:
        self.lm = lm
        self.mask: torch.Tensor | None = None
        self.embeds: list[torch.Tensor] | None = None
        self._handle: Any = None

    def _hook(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.mask = kwargs.get("visual_pos_masks")
        self.embeds = kwargs.get("deepstack_visual_embeds")

    def __enter__(self) -> DeepStackReplay:
        self._handle = self.lm.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def rows(self, idx: torch.Tensor) -> DeepStackReplay:
        import torch

        out = DeepStackReplay(self.lm)
        if self.mask is None or not self.embeds:
            out.mask, out.embeds = self.mask, self.embeds
            return out
        idx = idx.to(self.mask.device)
        owner = self.mask.nonzero()[:, 0]  # batch row of each visual position, in row-major order
        keep = torch.isin(owner, idx)
        out.mask = self.mask[idx]
        out.embeds = [e[keep.to(e.device)] for e in self.embeds]
        return out

    def apply(self, h: torch.Tensor, layer_idx: int) -> torch.Tensor:
        if self.mask is None or not self.embeds or layer_idx >= len(self.embeds):
            return h
        process = getattr(self.lm, "_deepstack_process", None)
        if process is None:
            raise ModelError(f"{type(self.lm).__name__} takes DeepStack features but has no _deepstack_process; "
                             "resuming does not know how to replay them for this transformers version")
        return process(h, self.mask, self.embeds[layer_idx])


@register_adapter("qwen3_vl")
class Qwen3VLM(QwenVLM):
    """Qwen3-VL: Qwen2.5-VL's layout plus DeepStack visual features in the first decoder layers."""

    def layer_replay(self) -> LayerReplay:
        return DeepStackReplay(self.language_model)


@register_adapter("glm4v")
class Glm4vVLM(QwenVLM):
    """GLM-4V: Qwen2-VL's multimodal RoPE (`get_rope_index`, same signature) with a GLM decoder.

    Module paths: decoder layers `model.model.language_model.layers`, final norm
    `model.model.language_model.norm`, LM head `model.lm_head`, vision `model.model.visual`.
    Prompt: `[gMASK]<sop><|user|>\\n<|begin_of_image|><|image|><|end_of_image|>{question}<|assistant|>\\n`.
    """

    family = "glm4v"
