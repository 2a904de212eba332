"""Per-image prefix reuse: encode each image once, then run only each question's suffix.

POPE asks 6 questions per image, MCQ datasets 4-5 per question. When the chat template puts the
image before the question (LLaVA `USER: <image>\\n{question} ASSISTANT:`, Qwen-VL ChatML), every
prompt of an image shares a token prefix holding the image tokens. `capture_prefix`:

1. groups the samples by image (`group_by_image`; order of first appearance);
2. per group, tokenizes every prompt as the plain path does (`vlm.prepare`) and takes the
   longest common token prefix P (at least the image tokens; at most each prompt minus its last
   token), so the token sequence is exactly the plain path's;
3. runs the vision tower and the prefix once (batch 1) into a `transformers.DynamicCache`,
   stopping after the exit layer, so the cache holds only layers 0..L*;
4. runs the suffixes in batches of `batch_size` on a copy of that cache expanded to the batch
   (right padded, so each row's positions continue the prefix's; Qwen's multimodal RoPE
   positions are the family's `VLM.rope_positions` over the whole prompt), again with
   early exit, and records the last real token of each row.

The activations equal the plain path's (`capture(..., token="first")`) up to float rounding.
Images asked only once, groups whose shared prefix does not hold the image, and templates where
the question precedes the image (e.g. the shipped demo model, `USER: {question} <image>
ASSISTANT:`) go through the plain path; `prefix_reuse_support(vlm)` says which case applies.

    >>> ok, why = prefix_reuse_support(vlm)                                        # doctest: +SKIP
    >>> acts = capture_prefix(vlm, samples, layers=range(2), exit_layer=1)         # doctest: +SKIP
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from superneurons.activations.prefill import model_layers, run_prefill
from superneurons.activations.trace import LayerTrace
from superneurons.errors import DataError
from superneurons.models.base import QUESTION_FIELD

if TYPE_CHECKING:
    from transformers import DynamicCache

    from superneurons.data.samples import Sample
    from superneurons.models.base import VLM

def image_key(sample: Sample) -> Any:
    """What identifies a sample's image: its resolved path, or the object for in-memory images."""
    if isinstance(sample.image, str | Path):
        return str(Path(sample.image).resolve())
    return id(sample.image)


def group_by_image(samples: Sequence[Sample]) -> list[list[int]]:
    """Indices of `samples` grouped by image, groups and members in order of first appearance."""
    groups: dict[Any, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(image_key(s), []).append(i)
    return list(groups.values())


def prefix_reuse_support(vlm: VLM) -> tuple[bool, str]:
    """(whether the prompt puts the image before the question, a sentence saying so)."""
    if not vlm.support.prefix_reuse:
        return False, f"{vlm.support.refusal('prefix reuse', vlm.family)}; using the plain path"
    template = vlm.prompt_template
    marker = vlm.image_placeholder()
    if vlm.image_placeholder_id() is None:
        return False, (f"{vlm.name_or_path}: cannot tell which token is the image placeholder; "
                       "prefix reuse is off, using the plain path")
    if marker is None or marker not in template:
        return True, "image placeholder not visible in the template; prefix reuse is checked per image group"
    if template.index(marker) < template.index(QUESTION_FIELD):
        return True, f"the template puts the image before the question ({template!r}): prefix reuse is on"
    return False, (f"the template puts the question before the image ({template!r}): nothing image-related "
                   "can be shared between questions, so prefix reuse falls back to the plain path")


def _common_prefix(rows: list[torch.Tensor]) -> int:
    """Length of the longest common prefix of 1-D token tensors."""
    n = min(len(r) for r in rows)
    stack = torch.stack([r[:n] for r in rows])
    same = (stack == stack[0]).all(dim=0)
    diff = (~same).nonzero()
    return int(diff[0]) if len(diff) else n


def _expand_cache(cache: DynamicCache, batch: int) -> DynamicCache:
    """A copy of `cache` with its batch of one repeated `batch` times (the prefix cache is not touched)."""
    out = copy.deepcopy(cache)
    out.batch_repeat_interleave(batch)
    return out


def _group_acts(vlm: VLM, group: Sequence[Sample], chosen: list[int], stop: int,
                batch_size: int) -> torch.Tensor | None:
    """float32 [n, len(chosen), D] for one image's samples via a shared prefix, or None if none is shared."""
    from transformers import DynamicCache

    image_id = vlm.image_placeholder_id()
    if image_id is None:
        return None
    enc = vlm.prepare(group)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    width = ids.shape[1]
    lengths = mask.sum(dim=1).tolist()
    rows = [ids[r, width - n:] for r, n in enumerate(lengths)]
    p = min(_common_prefix(rows), min(lengths) - 1)
    img = (rows[0] == image_id).nonzero()
    if len(img) == 0 or int(img[-1]) >= p:
        return None  # the image is not inside the shared prefix: nothing worth reusing
    rope = vlm.rope_positions(enc) if vlm.multimodal_rope else None
    if vlm.multimodal_rope and rope is None:
        return None  # multimodal RoPE positions cannot be rebuilt for the suffixes

    # 1. the prefix, once: the first prompt's inputs cut to P tokens, with its image
    first = vlm.prepare(group[:1])
    if first["input_ids"].shape[1] != lengths[0]:  # a batch of one has no padding
        return None
    # per-token inputs ([1, S, ...]: ids, mask, token types, Mllama's cross-attention mask): cut to the prefix
    per_token = first["input_ids"].shape
    prefix = {k: v[:, :p] if isinstance(v, torch.Tensor) and v.shape[:2] == per_token else v
              for k, v in first.items()}
    if rope is not None:
        prefix["position_ids"] = rope[:, :1, width - lengths[0]:width - lengths[0] + p]
    cache = DynamicCache(config=vlm.model.config)  # per-layer kinds (e.g. sliding windows) as the model has them
    with torch.inference_mode(), LayerTrace(vlm.decoder_layers, record=[], stop_after=stop) as trace:
        trace.run(vlm.model, **prefix, past_key_values=cache, use_cache=True)

    # 2. the suffixes, batched and right padded, on copies of the prefix cache
    pad = vlm.tokenizer.pad_token_id or 0
    out = []
    for lo in range(0, len(group), batch_size):
        idx = list(range(lo, min(lo + batch_size, len(group))))
        suffixes = [rows[r][p:] for r in idx]
        s_max = max(len(s) for s in suffixes)
        b = len(idx)
        input_ids = torch.full((b, s_max), pad, dtype=ids.dtype, device=ids.device)
        suffix_mask = torch.zeros((b, s_max), dtype=mask.dtype, device=mask.device)
        for j, s in enumerate(suffixes):
            input_ids[j, :len(s)] = s
            suffix_mask[j, :len(s)] = 1
        kwargs: dict[str, Any] = {}
        if rope is not None:
            pos = torch.zeros((rope.shape[0], b, s_max), dtype=rope.dtype, device=rope.device)
            for j, r in enumerate(idx):
                pos[:, j, :len(suffixes[j])] = rope[:, r, width - lengths[r] + p:]
            kwargs["position_ids"] = pos
        batch = {"input_ids": input_ids,
                 "attention_mask": torch.cat([torch.ones((b, p), dtype=mask.dtype, device=mask.device),
                                              suffix_mask], dim=1)}
        last = torch.tensor([len(s) - 1 for s in suffixes], device=ids.device)
        acts = run_prefill(vlm, batch, chosen, stop, position=last, past_key_values=_expand_cache(cache, b),
                           use_cache=True, **kwargs)
        out.append(acts.float().cpu())
    return torch.cat(out, dim=0)


def capture_prefix(vlm: VLM, samples: Sequence[Sample], layers: Iterable[int] | None = None,
                   exit_layer: int | None = None, batch_size: int = 8, warn: bool = True) -> torch.Tensor:
    """float32 Tensor[N, len(layers), D] at the first generated token, like `capture(token="first")`,
    with each image and shared prompt prefix encoded once (see the module docstring).

    Samples are grouped by image automatically; the output keeps the input order. Where no prefix
    can be shared (single questions, question-before-image templates) the plain path runs; with
    `warn` a template that rules reuse out is reported with a `UserWarning`.
    """
    if not samples:
        raise DataError("capture_prefix() got no samples; pass at least one Sample")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; use a positive batch size")
    chosen, stop = model_layers(vlm, layers, exit_layer)
    ok, why = prefix_reuse_support(vlm)
    if not ok and warn:
        warnings.warn(why, UserWarning, stacklevel=2)
    out = torch.empty((len(samples), len(chosen), vlm.hidden_size), dtype=torch.float32)
    plain: list[int] = []
    for group in group_by_image(samples):
        acts = None
        if ok and len(group) > 1:
            acts = _group_acts(vlm, [samples[i] for i in group], chosen, stop, batch_size)
        if acts is None:
            plain.extend(group)
        else:
            out[group] = acts
    plain.sort()
    for lo in range(0, len(plain), batch_size):
        idx = plain[lo:lo + batch_size]
        out[idx] = run_prefill(vlm, vlm.prepare([samples[i] for i in idx]), chosen, stop).float().cpu()
    return out
