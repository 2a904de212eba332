"""Fuyu adapter (`FuyuForConditionalGeneration`): no vision tower, image patches projected into the decoder.

Module paths (transformers 5.x): decoder layers `model.model.language_model.layers` (Persimmon),
final norm `model.model.language_model.final_layernorm`, LM head `model.lm_head`; image patches
`model.model.vision_embed_tokens` (a linear layer). Attention output projection:
`self_attn.dense` (not `o_proj`).

Base checkpoints ship without a chat template. The processor builds the prompt itself: it puts
the image tokens (`|SPEAKER|` per patch, `|NEWLINE|` per row) and `<s>` first and appends the
beginning-of-answer token `\\x04`; the text is the question and a newline (`plain_prompt`), as in
adept/fuyu-8b's examples.
"""

from __future__ import annotations

import torch

from superneurons.errors import ModelError
from superneurons.models.base import VLM
from superneurons.models.registry import register_adapter


@register_adapter("fuyu")
class FuyuVLM(VLM):
    """Fuyu: patches straight into a Persimmon decoder."""

    family = "fuyu"
    plain_prompt = "{question}\n"

    @property
    def final_norm(self) -> torch.nn.Module:
        return self.language_model.final_layernorm

    def attention_output(self, layer_idx: int) -> torch.nn.Module:
        proj = getattr(getattr(self.decoder_layers[layer_idx], "self_attn", None), "dense", None)
        if proj is None:
            raise ModelError(f"Fuyu decoder layer {layer_idx} has no self_attn.dense; this transformers version "
                             "moved it: update FuyuVLM.attention_output")
        return proj
