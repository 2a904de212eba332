"""The forward primitives every capture path is built on, on prepared (left-padded) batches.

- `resolve_layers` / `parse_layers`: which decoder layers to record and where to stop.
- `prepared_batches(vlm, samples, batch_size)`: (chunk, `vlm.prepare(chunk)`) per batch, in order,
  batch i+1 prepared in a worker thread while the caller runs batch i (`superneurons.utils.prefetch`);
  every step that runs the model over a sample list (probe, predict, evaluate, bench) loops over it.
- `run_prefill(vlm, batch, layers, exit_layer)`: one prefill forward through the one hook
  mechanism (`superneurons.activations.trace.LayerTrace`), returning Tensor[B, len(layers), D] at the
  last prompt position (index -1: batches are left padded), stopping after `exit_layer`.
- `greedy_generate(vlm, batch, max_new_tokens)`: the paper's decoding, used by every step that
  generates (the baselines, benchmarks, the last token, n-shot prompts); `real_tokens` marks
  each row's tokens up to its EOS.

    >>> acts = run_prefill(vlm, vlm.prepare(samples), layers=[0, 1], exit_layer=1)   # doctest: +SKIP
    >>> acts.shape                                                                  # doctest: +SKIP
    torch.Size([len(samples), 2, 4096])
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from superneurons.activations.trace import LayerTrace
from superneurons.constants import MAX_NEW_TOKENS
from superneurons.errors import DataError, ModelError
from superneurons.utils.prefetch import prefetched

if TYPE_CHECKING:
    from transformers import BatchEncoding

    from superneurons.data.samples import Sample
    from superneurons.models.base import VLM

T = TypeVar("T")


def batches(seq: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of `seq` of `size` items (the last may be shorter)."""
    if size < 1:
        raise DataError(f"batch_size={size}; use a positive batch size")
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def prepared_batches(vlm: VLM, samples: Sequence[Sample], batch_size: int, prefetch: bool = True
                     ) -> Iterator[tuple[Sequence[Sample], BatchEncoding]]:
    """(chunk, `vlm.prepare(chunk)`) for consecutive batches of `samples`, in order.

    With `prefetch` the next batch is prepared in one worker thread while the caller runs the
    current one; values and order are those of the serial loop, a preparation error (e.g. an
    unreadable image) is raised unchanged at its batch, and closing the iterator early joins the
    worker. Close it explicitly (`contextlib.closing`) when the loop may stop early.
    """
    return prefetched(lambda chunk: (chunk, vlm.prepare(chunk)), batches(samples, batch_size), enabled=prefetch)


def resolve_layers(num_layers: int, layers: Iterable[int] | None, exit_layer: int | None) -> tuple[list[int], int]:
    """(layers to record, layer to stop after). Defaults: every layer up to `exit_layer` (or the last).

    The forward always stops after the highest recorded layer: nothing above it is needed.
    Negative indices count from the end. Raises ValueError for out-of-range or inconsistent choices.
    """
    if exit_layer is not None:
        if exit_layer < 0:
            exit_layer += num_layers
        if not 0 <= exit_layer < num_layers:
            raise ValueError(f"exit_layer={exit_layer} is outside the model's layers 0..{num_layers - 1}")
    if layers is None:
        top = num_layers - 1 if exit_layer is None else exit_layer
        chosen = list(range(top + 1))
    else:
        chosen = sorted({i + num_layers if i < 0 else i for i in layers})
        if not chosen:
            raise ValueError("layers is empty; pass None for all layers or a list of indices")
        bad = [i for i in chosen if not 0 <= i < num_layers]
        if bad:
            raise ValueError(f"layer(s) {bad} do not exist: the model has layers 0..{num_layers - 1}")
        if exit_layer is not None and chosen[-1] > exit_layer:
            raise ValueError(f"cannot record layer {chosen[-1]} with exit_layer={exit_layer}: "
                             "the forward stops before it; raise exit_layer or drop that layer")
    return chosen, chosen[-1] if exit_layer is None else exit_layer


def model_layers(vlm: VLM, layers: Iterable[int] | None, exit_layer: int | None) -> tuple[list[int], int]:
    """`resolve_layers` on `vlm`'s checkpoint: negative indices count from its last decoder layer, and
    on a model loaded truncated (`load_model(max_layer=k)`) a layer above k is a ModelError that says
    so, never another layer's activations (-1 is the checkpoint's last layer, not layer k)."""
    loaded = vlm.num_layers
    if layers is None and exit_layer is None:  # "every layer": every layer the model holds
        exit_layer = loaded - 1
    chosen, stop = resolve_layers(getattr(vlm, "full_num_layers", loaded), layers, exit_layer)
    if stop >= loaded:
        raise ModelError(f"{vlm.name_or_path!r} was loaded truncated, with decoder layers 0..{loaded - 1} only "
                         f"(max_layer={loaded - 1}); layer {stop} was never loaded: load it with max_layer >= {stop} "
                         "or the whole model (--full-model / truncate=False)")
    return chosen, stop


def parse_layers(spec: str | None) -> list[int] | None:
    """Parse a layer spec such as "0-5,8,-1" into indices (None or "all" -> None, all layers)."""
    if spec is None or spec.strip().lower() in ("", "all"):
        return None
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                cut = part.index("-", 1)
                lo, hi = int(part[:cut]), int(part[cut + 1:])
                if hi < lo:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ValueError(f"layer spec {spec!r}: cannot read {part!r}; write indices and ranges "
                             "like 0-5,8 (negative indices count from the end)") from None
    return out


def _check_left_padded(batch: BatchEncoding | dict[str, Any]) -> None:
    mask = batch.get("attention_mask")
    if mask is not None and not bool(mask[:, -1].all()):
        raise ValueError("the batch is right padded: position -1 is padding for some rows; "
                         "set tokenizer.padding_side = 'left' (VLM.prepare does)")


def run_prefill(vlm: VLM, batch: BatchEncoding | dict[str, Any], layers: Iterable[int] | None = None,
                exit_layer: int | None = None, position: int | torch.Tensor | None = -1,
                **forward_kwargs: Any) -> torch.Tensor:
    """One forward of a prepared (left-padded) batch; Tensor[B, len(layers), D] at `position`.

    Stops after `exit_layer` (default: the highest recorded layer), so the layers above, the
    final norm and the LM head never run. `forward_kwargs` go to the model (e.g. `past_key_values`
    holding a shared prefix, `use_cache`).
    """
    chosen, stop = model_layers(vlm, layers, exit_layer)
    if isinstance(position, int) and position == -1:
        _check_left_padded(batch)
    forward_kwargs.setdefault("use_cache", False)
    with torch.inference_mode(), LayerTrace(vlm.decoder_layers, chosen, position, stop_after=stop) as trace:
        trace.run(vlm.model, **batch, **forward_kwargs)
    return trace.stacked()


def greedy_generate(vlm: VLM, batch: BatchEncoding | dict[str, Any], max_new_tokens: int = MAX_NEW_TOKENS
                    ) -> torch.Tensor:
    """The generated tokens [B, n] after each prompt of a prepared batch, by the paper's decoding:
    greedy (`do_sample=False`, one beam, no stop strings), at most `max_new_tokens`, never emitting an
    image / video placeholder (the next forward would read it as an image slot). Rows that ended
    early are padded after their EOS (see `real_tokens`)."""
    with torch.inference_mode():
        out = vlm.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                 temperature=None, top_p=None, top_k=None, pad_token_id=vlm.tokenizer.pad_token_id,
                                 suppress_tokens=vlm.media_token_ids() or None)
    return out[:, batch["input_ids"].shape[1]:]


def real_tokens(vlm: VLM, new: torch.Tensor) -> torch.Tensor:
    """BoolTensor [B, n]: the generated tokens up to and including each row's first EOS."""
    eos = vlm.model.generation_config.eos_token_id
    eos_ids = torch.tensor(eos if isinstance(eos, list) else [] if eos is None else [eos], device=new.device)
    is_eos = torch.isin(new, eos_ids)
    return ~((is_eos.cumsum(dim=1) - is_eos.long()) > 0)
