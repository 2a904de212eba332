"""Fuyu adapter (`FuyuForConditionalGeneration`): no vision tower, image patches projected into the decoder.

Module paths (transformers 5.x): decoder layers `model.model.language_model.layers` (Persimmon),
final norm `model.model.language_model.final_layernorm`, LM head `model.lm_head`; image patches
`model.model.vision_embed_tokens` (a linear layer). Attention output projection:
`self_attn.dense` (not `o_proj`).

Base checkpoints ship without a chat template. The processor builds the prompt itself: it puts
the image tokens (`|SPEAKER|` per patch, `|NEWLINE|` per row) and `<s>` first and appends the
beginning-of-answer token `\\x04`; the text is the question and a newline (`plain_prompt`), as in
adept/fuyu-8b's examples.

transformers 5.24's `FuyuImageProcessorPil.patchify_image` (the image processor used without
torchvision) is numpy code that `FuyuProcessor` calls with a torch tensor (`transpose(0, 1, 3, 2, 4)`
then fails); `load_processor` gives that one processor instance a `patchify_image` that runs it on
the tensor's numpy view and returns the tensor `[batch, patches, channels * h * w]` the torch
version returns.
"""

from __future__ import annotations

from typing import Any

import torch

from superneurons.errors import ModelError
from superneurons.models.base import VLM
from superneurons.models.registry import register_adapter


@register_adapter("fuyu")
class FuyuVLM(VLM):
    """Fuyu: patches straight into a Persimmon decoder."""

    family = "fuyu"
    plain_prompt = "{question}\n"

    @classmethod
    def load_processor(cls, model_type: str, name_or_path: str, **kwargs: Any) -> Any:
        processor = super().load_processor(model_type, name_or_path, **kwargs)
        image_processor = processor.image_processor
        if type(image_processor).__name__ == "FuyuImageProcessorPil":  # the numpy patchify (see module doc)
            numpy_patchify = image_processor.patchify_image

            def patchify_image(image: Any, patch_size: Any = None) -> torch.Tensor:
                tensor = isinstance(image, torch.Tensor)
                out = numpy_patchify(image.cpu().numpy() if tensor else image, patch_size=patch_size)
                out = torch.from_numpy(out)
                return out.unsqueeze(0) if out.dim() == 2 else out

            image_processor.patchify_image = patchify_image
        return processor

    @property
    def final_norm(self) -> torch.nn.Module:
        return self.language_model.final_layernorm

    def attention_output(self, layer_idx: int) -> torch.nn.Module:
        proj = getattr(getattr(self.decoder_layers[layer_idx], "self_attn", None), "dense", None)
        if proj is None:
            raise ModelError(f"Fuyu decoder layer {layer_idx} has no self_attn.dense; this transformers version "
                             "moved it: update FuyuVLM.attention_output")
        return proj
