"""The one hook mechanism: record decoder-layer outputs (and module inputs) during a forward, stop it.

`LayerTrace(layers, record, position, stop_after)` is a context manager in the spirit of baukit's
`TraceDict(stop=True)` and TransformerLens's `stop_at_layer`: plain PyTorch forward hooks on
decoder layers record each recorded layer's output at `position`; with `stop_after=k` the hook of
layer k raises the private `StopForward` right after it ran, so layers above k, the final norm
and the LM head never run. Hooks are removed in `finally`. `trace.run(fn)` calls the forward and
catches its own `StopForward` (an outer trace never swallows an inner trace's stop).

When it stops, the trace keeps the stop layer's full output and the keyword arguments the layers
were called with, so `resume(vlm, trace, rows)` (below) can finish the forward later (cascade
inference): the upper layers, the final norm and the LM head, for the chosen batch rows; a
family's `LayerReplay` (`VLM.layer_replay()`) rides along to record what the language model adds
between layers (Qwen3-VL's DeepStack features), so resuming is exact at every layer. `record_inputs` records the first positional input of other
modules (e.g. attention output projections, for head outputs).

    >>> with LayerTrace(vlm.decoder_layers, record=[0, 1], stop_after=1) as trace:   # doctest: +SKIP
    ...     trace.run(vlm.model, **batch, use_cache=False)
    >>> trace.stacked().shape                                                        # doctest: +SKIP
    torch.Size([B, 2, D])
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from superneurons.errors import ModelError
from superneurons.models.base import LayerReplay

if TYPE_CHECKING:
    from superneurons.data.samples import Sample
    from superneurons.models.base import VLM


class StopForward(Exception):
    """Private: raised by a `LayerTrace` hook to stop the forward after its `stop_after` layer."""

    def __init__(self, trace: LayerTrace) -> None:
        super().__init__(f"forward stopped after layer {trace.stop_after}")
        self.trace = trace


def hidden(output: Any) -> torch.Tensor:
    """A decoder layer's residual-stream output: a tensor (transformers 5.x) or a tuple's first item."""
    return output[0] if isinstance(output, tuple) else output


def pick(h: torch.Tensor, position: int | torch.Tensor | None) -> torch.Tensor:
    """h[B, S, ...] at `position`: an int for every row, a LongTensor[B] per row, or None for all."""
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
    `record_inputs`: {key: module} whose first positional input is recorded at `position` (in
    `trace.inputs[key]`). `replay`: a family's `LayerReplay`, entered with the trace and kept for
    resuming.

    After the forward, `trace.outputs[l]` is layer l's output ([B, D], or [B, S, D] with
    position=None). When the forward stopped, `trace.stopped` is True and `trace.stop_hidden` /
    `trace.stop_kwargs` hold the stop layer's full output and its call keyword arguments.
    """

    def __init__(self, layers: torch.nn.ModuleList, record: Iterable[int] | None = None,
                 position: int | torch.Tensor | None = -1, stop_after: int | None = None,
                 record_inputs: Mapping[Hashable, torch.nn.Module] | None = None,
                 replay: LayerReplay | None = None) -> None:
        n = len(layers)
        if stop_after is not None and not 0 <= stop_after < n:
            raise ValueError(f"stop_after={stop_after} is outside the model's layers 0..{n - 1}")
        top = n - 1 if stop_after is None else stop_after
        self.record = list(range(top + 1)) if record is None else sorted(set(record))
        bad = [i for i in self.record if not 0 <= i <= top]
        if bad:
            raise ValueError(f"cannot record layer(s) {bad}: the forward runs layers 0..{top}")
        self.layers, self.position, self.stop_after = layers, position, stop_after
        self.record_inputs = dict(record_inputs or {})
        self.replay = replay
        self.outputs: dict[int, torch.Tensor] = {}
        self.inputs: dict[Hashable, torch.Tensor] = {}
        self.stopped = False
        self.stop_hidden: torch.Tensor | None = None
        self.stop_kwargs: dict[str, Any] = {}
        self._handles: list[Any] = []

    def _hook(self, idx: int) -> Callable[..., None]:
        keep = idx in self.record
        stop = idx == self.stop_after

        def hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            h = hidden(output)
            if keep:
                self.outputs[idx] = pick(h, self.position).detach()
            if stop:
                self.stopped = True
                self.stop_hidden = h.detach()
                self.stop_kwargs = dict(kwargs)
                raise StopForward(self)

        return hook

    def _input_hook(self, key: Hashable) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
            self.inputs[key] = pick(args[0], self.position).detach()

        return hook

    def __enter__(self) -> LayerTrace:
        self.outputs.clear()
        self.inputs.clear()
        self.stopped = False
        try:
            if self.replay is not None:
                self.replay.__enter__()
            for key, module in self.record_inputs.items():
                self._handles.append(module.register_forward_pre_hook(self._input_hook(key)))
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
            if self.replay is not None:
                self.replay.__exit__(None, None, None)

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


# ---- resuming a stopped forward -------------------------------------------------------------------
# Finish a forward that a `LayerTrace` stopped: the layers above the stop layer, the final norm, the
# LM head. This is what lets a cascade answer from the Super Neurons when they are sure and, when they
# are not, continue the *same* forward to the model's own first-token answer without running the
# vision tower and layers 0..L* again. `resume(vlm, trace, rows)` re-runs the upper decoder layers
# with the stop layer's call arguments (attention mask, position ids / embeddings, cache positions),
# sliced to the chosen batch rows; the family's `LayerReplay` (kept by the trace) re-adds what the
# language model puts between layers (Qwen3-VL's DeepStack features), so resuming is exact at every
# layer. Refused (`check_resumable`): models loaded truncated (no upper layers, norm or head), and
# models whose upper layers use another attention type than layer L* (sliding-window layers).
# `verify_resume` checks any family against a plain forward.
RESUME_ATOL = 1e-3  #: max |logit difference| accepted by `verify_resume` (float32 tiny models: ~1e-6)
_UNSLICEABLE = object()


def _slice_value(vlm: VLM, name: str, v: Any, idx: Tensor, batch: int) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, Tensor):
        if v.dim() == 0 or name == "cache_position":
            return v
        dim = vlm.layer_kwarg_batch_dim(name, v)
        if v.shape[dim] == batch:
            return v.index_select(dim, idx.to(v.device))
        return v if dim == 0 and v.shape[0] == 1 else _UNSLICEABLE  # broadcast over the batch
    if isinstance(v, (tuple, list)):
        parts = [_slice_value(vlm, name, x, idx, batch) for x in v]
        return _UNSLICEABLE if any(p is _UNSLICEABLE for p in parts) else type(v)(parts)
    if isinstance(v, dict):
        d = {k: _slice_value(vlm, k, x, idx, batch) for k, x in v.items()}
        return _UNSLICEABLE if any(p is _UNSLICEABLE for p in d.values()) else d
    return _UNSLICEABLE  # a cache object, a flex-attention BlockMask, ...


def slice_layer_kwargs(vlm: VLM, kwargs: dict[str, Any], idx: Tensor, batch: int) -> dict[str, Any] | None:
    """The decoder-layer call arguments of batch rows `idx` only, or None if one cannot be sliced
    exactly (then resume the whole batch and pick the rows)."""
    out = {k: _slice_value(vlm, k, v, idx, batch) for k, v in kwargs.items()}
    return None if any(v is _UNSLICEABLE for v in out.values()) else out


def check_resumable(vlm: VLM, exit_layer: int) -> None:
    """Raise a ModelError if the model cannot finish a forward from `exit_layer`: it was loaded
    truncated (no upper layers, norm or LM head), or its upper layers need other call arguments."""
    if not vlm.support.cascade:
        raise ModelError(f"{vlm.support.refusal('cascade', vlm.family)}; use SNs only (no cascade margin) with "
                         f"{vlm.name_or_path!r}")
    if getattr(vlm, "max_layer", None) is not None:
        raise ModelError(f"{vlm.name_or_path!r} was loaded with only layers 0..{vlm.max_layer} (max_layer / "
                         "--truncate); a cascade needs the whole model: load it without max_layer")
    types = getattr(vlm.text_config, "layer_types", None)
    if types and len(set(types[exit_layer:])) > 1:
        raise ModelError(f"layers {exit_layer}..{len(types) - 1} mix attention types {sorted(set(types[exit_layer:]))}: "
                         "a cascade resumes with layer L*'s attention mask, which is wrong for the others; "
                         "use SNs only (no cascade margin) with this model")


def resume(vlm: VLM, trace: LayerTrace, rows: Tensor | None = None, *, slice_rows: bool = True,
           all_positions: bool = False) -> Tensor:
    """Finish the forward `trace` stopped, for batch `rows` (default all): float32 logits [r, V] at the
    last position (the first answer token), or [r, S, V] with `all_positions`.

    Runs only the layers above the stop layer, the final norm and the LM head; with `slice_rows`
    only the chosen rows go through them (otherwise the whole batch, and the rows are picked).
    """
    if not trace.stopped or trace.stop_hidden is None or trace.stop_after is None:
        raise ValueError("resume needs a LayerTrace that stopped a forward (stop_after=k)")
    h_all = trace.stop_hidden
    batch = h_all.shape[0]
    idx = torch.arange(batch) if rows is None else rows.to(torch.long).cpu()
    replay = trace.replay if trace.replay is not None else LayerReplay()
    kwargs: dict[str, Any] | None = trace.stop_kwargs
    pick_rows: Tensor | None = None
    if idx.numel() != batch:
        kwargs = slice_layer_kwargs(vlm, trace.stop_kwargs, idx, batch) if slice_rows else None
        if kwargs is None:  # resume everything, keep the rows asked for
            kwargs, pick_rows = trace.stop_kwargs, idx
        else:
            h_all, replay = h_all[idx.to(h_all.device)], replay.rows(idx)
    with torch.inference_mode():
        h = replay.apply(h_all, trace.stop_after)
        for i in range(trace.stop_after + 1, vlm.num_layers):
            h = replay.apply(hidden(vlm.decoder_layers[i](h, **kwargs)), i)
        logits = vlm.lm_head(vlm.final_norm(h if all_positions else h[:, -1:])).float()
        if not all_positions:
            logits = logits[:, -1]
    return logits if pick_rows is None else logits[pick_rows.to(logits.device)]


def verify_resume(vlm: VLM, samples: Sequence[Sample], exit_layer: int, atol: float = RESUME_ATOL) -> float:
    """Check on `samples` (one batch) that resuming from `exit_layer` gives the logits of a plain full
    forward at the first answer position; return the max |difference|, raise ModelError above `atol`.

    Cheap insurance for a model family the tests do not cover (it costs one extra forward).
    """
    check_resumable(vlm, exit_layer)
    batch = vlm.prepare(samples)
    with torch.inference_mode():
        ref = vlm.model(**batch, use_cache=False).logits[:, -1].float()
        with LayerTrace(vlm.decoder_layers, [exit_layer], -1, stop_after=exit_layer,
                        replay=vlm.layer_replay()) as trace:
            trace.run(vlm.model, **batch, use_cache=False)
    diff = float((resume(vlm, trace) - ref).abs().max())
    if not diff <= atol:
        raise ModelError(f"resuming {vlm.name_or_path!r} from layer {exit_layer} differs from a full forward "
                         f"by {diff:.3g} (> {atol}); the cascade does not support this model family")
    return diff
