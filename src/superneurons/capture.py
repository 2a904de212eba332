"""Activation capture: the residual stream after each decoder layer at one token position.

This module owns the step H_n = f(E_vis(I_n); E_txt(T_n)) in R^{L x D} of the paper (Alg. 1-2, l. 3).
Three layers of API, each built on the one before:

- `LayerTrace(layers, record, position, stop_after)`: a context manager that registers plain
  PyTorch forward hooks on decoder layers, records each recorded layer's output at `position`
  and, with `stop_after=k`, raises the private `StopForward` right after layer k so that layers
  above k never run (like baukit's `Trace(stop=True)` / TransformerLens's `stop_at_layer`). Hooks
  are removed in `finally`. `trace.run(fn)` calls the forward and catches its own `StopForward`.
  When it stops, it keeps the stop layer's full output and the keyword arguments the layers were
  called with, so `resume_forward` can finish the forward later (cascade inference), and a
  caller can pass its own `past_key_values` to reuse a KV-cache prefix.
- `run_prefill(vlm, batch, layers, exit_layer)`: one prefill forward of a prepared batch,
  returning Tensor[B, len(layers), D] at the last prompt position (index -1: batches are left
  padded).
- `capture(vlm, samples, token, layers, exit_layer, batch_size)`: over a list of samples,
  float32 Tensor[N, len(layers), D]. `token="first"` is the last prompt position of the prefill,
  the state that produces the first generated token (paper Tab. 6: the best choice, and the one
  that allows early exit). `token="last"` greedily generates the answer, then runs one forward
  over prompt + generated tokens and records each sample's final token (its EOS, or the last of
  `max_new_tokens`).

    >>> acts = capture(vlm, samples, layers=range(8), exit_layer=7)   # doctest: +SKIP
    >>> acts.shape                                                   # doctest: +SKIP
    torch.Size([len(samples), 8, 4096])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch

from superneurons.errors import DataError

if TYPE_CHECKING:
    from transformers import BatchEncoding

    from superneurons.data.samples import Sample
    from superneurons.models.base import VLM

Token = Literal["first", "last"]
TOKENS: tuple[str, ...] = ("first", "last")
DEFAULT_MAX_NEW_TOKENS = 128  # the paper's generation budget (Sec. 4.2)


class StopForward(Exception):
    """Private: raised by a `LayerTrace` hook to stop the forward after its `stop_after` layer."""

    def __init__(self, trace: LayerTrace) -> None:
        super().__init__(f"forward stopped after layer {trace.stop_after}")
        self.trace = trace


def _hidden(output: Any) -> torch.Tensor:
    """A decoder layer's residual-stream output: a tensor (transformers 5.x) or a tuple's first item."""
    return output[0] if isinstance(output, tuple) else output


def _pick(h: torch.Tensor, position: int | torch.Tensor | None) -> torch.Tensor:
    """h[B, S, D] at `position`: an int for every row, a LongTensor[B] per row, or None for all."""
    if position is None:
        return h
    if isinstance(position, int):
        return h[:, position]
    rows = torch.arange(h.shape[0], device=h.device)
    return h[rows, position.to(h.device)]


class LayerTrace:
    """Record decoder-layer outputs during a forward; optionally stop after one layer.

    `layers`: the decoder `ModuleList`. `record`: indices to record (None: all up to the stop
    layer). `position`: the token position to keep (int, LongTensor[B] per row, or None for the
    whole sequence). `stop_after`: raise `StopForward` after this layer's hooks run.

    After the forward, `trace.outputs[l]` is layer l's output ([B, D], or [B, S, D] with
    position=None). When the forward stopped, `trace.stopped` is True and `trace.stop_hidden` /
    `trace.stop_kwargs` hold the stop layer's full output and its call keyword arguments.
    """

    def __init__(self, layers: torch.nn.ModuleList, record: Iterable[int] | None = None,
                 position: int | torch.Tensor | None = -1, stop_after: int | None = None) -> None:
        n = len(layers)
        if stop_after is not None and not 0 <= stop_after < n:
            raise ValueError(f"stop_after={stop_after} is outside the model's layers 0..{n - 1}")
        top = n - 1 if stop_after is None else stop_after
        self.record = list(range(top + 1)) if record is None else sorted(set(record))
        bad = [i for i in self.record if not 0 <= i <= top]
        if bad:
            raise ValueError(f"cannot record layer(s) {bad}: the forward runs layers 0..{top}")
        self.layers, self.position, self.stop_after = layers, position, stop_after
        self.outputs: dict[int, torch.Tensor] = {}
        self.stopped = False
        self.stop_hidden: torch.Tensor | None = None
        self.stop_kwargs: dict[str, Any] = {}
        self._handles: list[Any] = []

    def _hook(self, idx: int) -> Callable[..., None]:
        keep = idx in self.record
        stop = idx == self.stop_after

        def hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            h = _hidden(output)
            if keep:
                self.outputs[idx] = _pick(h, self.position).detach()
            if stop:
                self.stopped = True
                self.stop_hidden = h.detach()
                self.stop_kwargs = dict(kwargs)
                raise StopForward(self)

        return hook

    def __enter__(self) -> LayerTrace:
        self.outputs.clear()
        self.stopped = False
        try:
            for idx in sorted(set(self.record) | ({self.stop_after} if self.stop_after is not None else set())):
                self._handles.append(self.layers[idx].register_forward_hook(self._hook(idx), with_kwargs=True))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook this trace registered (idempotent)."""
        try:
            for h in self._handles:
                h.remove()
        finally:
            self._handles.clear()

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call `fn(*args, **kwargs)` (a forward); return its result, or None if this trace stopped it."""
        try:
            return fn(*args, **kwargs)
        except StopForward as stop:
            if stop.trace is not self:
                raise
            return None

    def stacked(self) -> torch.Tensor:
        """The recorded outputs as Tensor[B, len(record), D] (or [B, len(record), S, D])."""
        missing = [i for i in self.record if i not in self.outputs]
        if missing:
            raise RuntimeError(f"layers {missing} did not run; was the forward called inside the trace?")
        return torch.stack([self.outputs[i] for i in self.record], dim=1)


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


def _check_left_padded(batch: BatchEncoding) -> None:
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
    chosen, stop = resolve_layers(vlm.num_layers, layers, exit_layer)
    if isinstance(position, int) and position == -1:
        _check_left_padded(batch)
    forward_kwargs.setdefault("use_cache", False)
    with torch.inference_mode(), LayerTrace(vlm.decoder_layers, chosen, position, stop_after=stop) as trace:
        trace.run(vlm.model, **batch, **forward_kwargs)
    return trace.stacked()


def resume_forward(vlm: VLM, trace: LayerTrace) -> torch.Tensor:
    """Finish a forward that `trace` stopped: run the layers above the stop layer, the final norm
    and the LM head; return logits [B, S, V] (cascade inference).

    Exact for LLaVA and Qwen2/2.5-VL. For Qwen3-VL it is exact only when the trace stopped strictly
    after the last DeepStack layer (the visual features it adds after the first layers are not
    replayed); `superneurons.cascade` records and re-adds them, and is exact at every layer.
    """
    if not trace.stopped or trace.stop_hidden is None or trace.stop_after is None:
        raise ValueError("resume_forward needs a LayerTrace that stopped a forward (stop_after=k)")
    lm = vlm.language_model
    h = trace.stop_hidden
    with torch.inference_mode():
        for layer in vlm.decoder_layers[trace.stop_after + 1:]:
            h = _hidden(layer(h, **trace.stop_kwargs))
        h = lm.norm(h)
        return vlm.model.get_output_embeddings()(h)


def _batches(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def _greedy_last_position(vlm: VLM, batch: BatchEncoding, max_new_tokens: int) -> tuple[dict[str, Any], torch.Tensor]:
    """Greedy-generate, then the inputs of one forward over prompt + generated tokens and each
    row's index of its last real token (its EOS, or the last of `max_new_tokens`)."""
    inputs = dict(batch)
    gen = vlm.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                             pad_token_id=vlm.tokenizer.pad_token_id, suppress_tokens=vlm.media_token_ids() or None)
    prompt_len = inputs["input_ids"].shape[1]
    new = gen[:, prompt_len:]
    eos = vlm.model.generation_config.eos_token_id
    eos_ids = torch.tensor(eos if isinstance(eos, list) else [] if eos is None else [eos], device=new.device)
    is_eos = torch.isin(new, eos_ids)
    # tokens up to and including the first EOS are real; the rest is padding added by generate
    after_eos = (is_eos.cumsum(dim=1) - is_eos.long()) > 0
    new_mask = (~after_eos).to(inputs["attention_mask"].dtype)
    inputs["input_ids"] = gen
    inputs["attention_mask"] = torch.cat([inputs["attention_mask"], new_mask], dim=1)
    if "mm_token_type_ids" in inputs:
        mm = inputs["mm_token_type_ids"]
        inputs["mm_token_type_ids"] = torch.cat([mm, torch.zeros_like(new, dtype=mm.dtype)], dim=1)
    last = prompt_len + new_mask.sum(dim=1) - 1
    return inputs, last


def capture_batches(vlm: VLM, samples: Sequence[Sample], token: Token = "first",
                    layers: Iterable[int] | None = None, exit_layer: int | None = None, batch_size: int = 8,
                    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> Iterator[torch.Tensor]:
    """Yield float32 Tensor[b, len(layers), D] per batch of `samples` (see `capture`)."""
    if token not in TOKENS:
        raise ValueError(f"token {token!r} is not one of {', '.join(TOKENS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; use a positive batch size")
    chosen, stop = resolve_layers(vlm.num_layers, layers, exit_layer)
    if token == "last" and exit_layer is not None:
        raise ValueError("exit_layer needs token='first': the last token exists only after a full generation")
    for chunk in _batches(samples, batch_size):
        batch = vlm.prepare(chunk)
        if token == "first":
            acts = run_prefill(vlm, batch, chosen, stop)
        else:
            with torch.inference_mode():
                inputs, last = _greedy_last_position(vlm, batch, max_new_tokens)
            acts = run_prefill(vlm, inputs, chosen, stop, position=last)
        yield acts.float().cpu()


def capture(vlm: VLM, samples: Sequence[Sample], token: Token = "first", layers: Iterable[int] | None = None,
            exit_layer: int | None = None, batch_size: int = 8, progress: bool = True,
            max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> torch.Tensor:
    """float32 Tensor[N, len(layers), D]: each decoder layer's output (the residual stream after
    the layer, before the final norm) at the chosen token, for every sample.

    `layers`: indices to keep (default: all, or 0..exit_layer). `exit_layer=k` stops every
    forward right after layer k. Batches are left padded with an attention mask, so a sample's
    activations do not depend on its batch neighbours.
    """
    if not samples:
        raise DataError("capture() got no samples; pass at least one Sample")
    it = capture_batches(vlm, samples, token, layers, exit_layer, batch_size, max_new_tokens)
    if not progress:
        return torch.cat(list(it), dim=0)
    from rich.console import Console
    from rich.progress import Progress

    out: list[torch.Tensor] = []
    with Progress(transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(f"capture ({token} token)", total=len(samples))
        for acts in it:
            out.append(acts)
            bar.advance(task, acts.shape[0])
    return torch.cat(out, dim=0)
