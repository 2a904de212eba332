"""Gemma3 and PaliGemma adapters (`Gemma3ForConditionalGeneration`, `PaliGemmaForConditionalGeneration`).

Module paths (transformers 5.x): decoder layers `model.model.language_model.layers`, final norm
`model.model.language_model.norm`, LM head `model.lm_head`; vision `model.model.vision_tower`
(SigLIP) -> `model.model.multi_modal_projector`.

Both forwards take `token_type_ids` (kept by `VLM.encode`): Gemma3 marks image tokens (they attend
to each other bidirectionally), PaliGemma marks the prefix (image + prompt attend bidirectionally,
a prefix LM). Without them Gemma3's activations are off and PaliGemma's depend on left padding.

- Gemma3: the processor wants one image list per prompt (`nested_images`). Its decoder mixes
  sliding-window and global layers, so the cascade (which resumes every upper layer with layer L*'s
  mask) is refused. Prompt (chat template):
  `<bos><start_of_turn>user\\n<start_of_image>{question}<end_of_turn>\\n<start_of_turn>model\\n`.
- PaliGemma: base checkpoints ship without a chat template; the prompt is the processor's own
  convention (`plain_prompt`), `<image>answer en {question}`, to which the processor adds `<bos>`
  after the image tokens and a newline at the end (big_vision's VQA prefix). Prefix reuse is off:
  the whole prompt attends bidirectionally, so an image prefix encoded alone would not see the question.
"""

from __future__ import annotations

from superneurons.models.base import VLM
from superneurons.models.registry import register_adapter
from superneurons.models.support import MIXED_ATTENTION, Support


@register_adapter("gemma3")
class Gemma3VLM(VLM):
    """Gemma3: SigLIP + pooled image tokens, Gemma3 text (5 sliding-window layers per global one)."""

    family = "gemma3"
    nested_images = True
    support = Support(cascade=False, why=MIXED_ATTENTION)


@register_adapter("paligemma")
class PaliGemmaVLM(VLM):
    """PaliGemma: SigLIP + Gemma, prefix-LM attention over image and prompt."""

    family = "paligemma"
    plain_prompt = "<image>answer en {question}"
    generated_token_type = 1  # the suffix: generated tokens attend causally (as PaliGemma's generate does)
    support = Support(prefix_reuse=False, why="the prompt is a bidirectional prefix: an image prefix encoded "
                                              "alone would not attend to the question")
