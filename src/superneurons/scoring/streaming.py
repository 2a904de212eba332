"""What scoring reads: an in-memory `[N, L, D]` tensor (CPU or GPU) or a store, as chunks of layers.

A store (anything with `iter_layer_chunks(chunk_layers)`, e.g. `ActivationStore`) is read in a
background thread one chunk ahead of the counting (`prefetched`), so reading the next chunk from
disk (safetensors releases the GIL while it copies) overlaps with counting the current one.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from superneurons.errors import DataError, StoreError

_DONE = object()


def is_store(source: Any) -> bool:
    return hasattr(source, "iter_layer_chunks")


def labels_for(source: Any, labels: Tensor | Sequence[int] | None, n: int) -> Tensor:
    """`[N]` long labels (1 yes / 0 no), from `labels` or the store's own."""
    if labels is None:
        if not hasattr(source, "labels"):
            raise DataError("labels are missing; pass labels (1 yes / 0 no per sample) with a plain tensor")
        labels = source.labels
    y = torch.as_tensor(labels)
    if y.is_floating_point() and not torch.equal(y, y.round()):
        raise DataError("labels must be 1 (yes) or 0 (no), got fractional values")
    y = y.long().reshape(-1).cpu()
    if y.numel() != n:
        raise DataError(f"{y.numel()} labels for {n} samples; pass one label per activation row")
    if ((y != 0) & (y != 1)).any():
        i = int(((y != 0) & (y != 1)).nonzero()[0])
        raise DataError(f"label {int(y[i])} at sample {i} is not 1 (yes) or 0 (no)")
    return y


def source_shape(source: Any) -> tuple[list[int], int, int]:
    """(model layer of each row, N, D) of a tensor or store."""
    if is_store(source):
        layers = [int(x) for x in source.layers]
        return layers, int(source.num_samples), int(source.hidden_size)
    if not isinstance(source, Tensor):
        raise DataError(f"activations must be a Tensor[N, L, D] or an ActivationStore, got {type(source).__name__}")
    if source.dim() != 3:
        raise DataError(f"activations must have shape [N, L, D], got {list(source.shape)}; "
                        "add a layer axis with acts[:, None] for one layer")
    if not source.is_floating_point():
        raise DataError(f"activations must be floating point, got {source.dtype}")
    n, n_layers, d = source.shape
    return list(range(n_layers)), n, d


def prefetched(items: Iterable[Any], depth: int = 1) -> Iterator[Any]:
    """The items of `items`, produced by a reader thread up to `depth` ahead of the consumer.

    An exception in the reader is raised here; closing the generator early stops the reader.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as e:  # handed to the consumer
            q.put(e)

    reader = threading.Thread(target=read, name="superneurons-prefetch", daemon=True)
    reader.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting on a full queue
            with contextlib.suppress(queue.Empty):
                q.get(timeout=0.1)
        reader.join()


def iter_chunks(source: Any, chunk_layers: int, max_layer: int | None
                ) -> Iterator[tuple[int, list[int], Tensor]]:
    """Yield (first row, model layers, activations [N, l, D]) for rows with layer <= max_layer.

    A tensor is sliced (on its own device); a store is read one chunk ahead in a reader thread.
    """
    if chunk_layers < 1:
        raise DataError(f"chunk_layers={chunk_layers}; use a positive number of layers per chunk")
    row = 0
    if is_store(source):
        layers = [int(v) for v in source.layers]
        wanted = source.iter_layer_chunks(chunk_layers)
        if max_layer is not None and layers == sorted(layers):  # the reader stops where scoring does
            needed = -(-sum(1 for v in layers if v <= max_layer) // chunk_layers)
            wanted = itertools.islice(wanted, needed)
        chunks: Iterator[tuple[Sequence[int], Tensor]] = prefetched(wanted)
    else:
        n_layers = source.shape[1]
        chunks = ((list(range(i, min(i + chunk_layers, n_layers))), source[:, i:i + chunk_layers])
                  for i in range(0, n_layers, chunk_layers))
    try:
        for layer_ids, x in chunks:
            ids = [int(v) for v in layer_ids]
            if x.dim() != 3 or x.shape[1] != len(ids):
                raise StoreError(f"store chunk for layers {ids} has shape {list(x.shape)}; expected [N, {len(ids)}, D]")
            if max_layer is not None:
                keep = sum(1 for v in ids if v <= max_layer)
                if keep == 0:
                    break
                ids, x = ids[:keep], x[:, :keep]
            yield row, ids, x
            row += len(ids)
            if max_layer is not None and len(ids) and ids[-1] >= max_layer:
                break
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
