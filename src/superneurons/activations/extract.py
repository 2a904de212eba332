"""Activation capture over samples: the residual stream after each decoder layer at one token.

This module owns the step H_n = f(E_vis(I_n); E_txt(T_n)) in R^{L x D} of the paper (Alg. 1-2,
line 3): `capture(vlm, samples)` returns float32 Tensor[N, len(layers), D].

- `token="first"` is the last prompt position of the prefill, the state that produces the first
  generated token (paper Tab. 6: the best choice, and the one that allows early exit); the forward
  stops after the highest recorded layer (`exit_layer`).
- `token="last"` greedily generates the answer (`greedy_generate`), then runs one forward over
  prompt + generated tokens and records each sample's final token (its EOS, or the last of
  `max_new_tokens`).
- `prefix_reuse` encodes each image and shared prompt prefix once (`superneurons.activations.prefix`).

    >>> acts = capture(vlm, samples, layers=range(8), exit_layer=7)   # doctest: +SKIP
    >>> acts.shape                                                   # doctest: +SKIP
    torch.Size([len(samples), 8, 4096])
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import closing
from typing import TYPE_CHECKING, Any

import torch

from superneurons.activations.prefill import (
    greedy_generate,
    model_layers,
    prepared_batches,
    real_tokens,
    run_prefill,
)
from superneurons.activations.prefix import capture_prefix
from superneurons.config import CaptureConfig, configure
from superneurons.errors import DataError, ModelError
from superneurons.utils.progress import progress as progress_bar

if TYPE_CHECKING:
    from transformers import BatchEncoding

    from superneurons.data.samples import Sample
    from superneurons.models.base import VLM


def _last_token_inputs(vlm: VLM, batch: BatchEncoding, max_new_tokens: int) -> tuple[dict[str, Any], torch.Tensor]:
    """Greedy-generate, then the inputs of one forward over prompt + generated tokens and each
    row's index of its last real token (its EOS, or the last of `max_new_tokens`)."""
    new = greedy_generate(vlm, batch, max_new_tokens)
    prompt_len = batch["input_ids"].shape[1]
    new_mask = real_tokens(vlm, new)
    inputs = vlm.extend_tokens(dict(batch), new, new_mask)
    last = prompt_len + new_mask.sum(dim=1) - 1
    return inputs, last


def capture_batches(vlm: VLM, samples: Sequence[Sample], config: CaptureConfig | None = None,
                    **options: Any) -> Iterator[torch.Tensor]:
    """Yield float32 Tensor[b, len(layers), D] per batch of `samples` (see `capture`)."""
    cfg = configure(CaptureConfig, config, options)
    chosen, stop = model_layers(vlm, cfg.layers, cfg.exit_layer)
    for feature, used in (("capture", True), ("early_exit", cfg.exit_layer is not None)):
        if used and not vlm.support.features()[feature]:
            raise ModelError(f"{vlm.support.refusal(feature, vlm.family)} ({vlm.name_or_path!r})")
    if cfg.prefix_reuse:
        yield capture_prefix(vlm, samples, chosen, cfg.exit_layer, cfg.batch_size, warn=False)
        return
    with closing(prepared_batches(vlm, samples, cfg.batch_size, cfg.prefetch)) as ready:
        for _, batch in ready:
            if cfg.token == "first":
                acts = run_prefill(vlm, batch, chosen, stop)
            else:
                inputs, last = _last_token_inputs(vlm, batch, cfg.max_new_tokens)
                acts = run_prefill(vlm, inputs, chosen, stop, position=last)
            yield acts.float().cpu()


def capture(vlm: VLM, samples: Sequence[Sample], config: CaptureConfig | None = None, *, progress: bool = True,
            **options: Any) -> torch.Tensor:
    """float32 Tensor[N, len(layers), D]: each decoder layer's output (the residual stream after
    the layer, before the final norm) at the chosen token, for every sample.

    Settings come from `config` and/or `CaptureConfig` fields as keywords: `token`, `layers`
    (indices to keep; default all, or 0..exit_layer), `exit_layer` (stop every forward right
    after layer k), `batch_size`, `max_new_tokens`, `prefix_reuse`, `prefetch`. Batches are left padded with an
    attention mask, so a sample's activations do not depend on its batch neighbours.
    """
    if not samples:
        raise DataError("capture() got no samples; pass at least one Sample")
    cfg = configure(CaptureConfig, config, options)
    out: list[torch.Tensor] = []
    with progress_bar(f"capture ({cfg.token} token)", len(samples), enabled=progress) as advance:
        for acts in capture_batches(vlm, samples, cfg):
            out.append(acts)
            advance(acts.shape[0])
    return torch.cat(out, dim=0)
