"""The activation store: H in R^{N x L x D} on disk, as sharded safetensors + manifest.json.

This module owns writing (`probe`) and reading (`ActivationStore`, `load_activations`) the
activations the paper's Alg. 1 scores. Layout of a store folder:

    manifest.json              what was captured: model fingerprint, prompt template, token,
                               layers, dtype, sample ids + labels in order, skipped samples,
                               shard list, `complete` flag, library version
    shard-00000.safetensors    tensor "activations" [n, l, D] (stored dtype) for samples
    shard-00001.safetensors    [start, stop) (tensor "sample_range", also in the metadata)

Every file is written to a temporary name and moved into place with `os.replace`, so a killed
run leaves only whole shards; running `probe` again with the same arguments resumes after the
last whole shard (no sample lost or duplicated). A different model, prompt template, token,
layer set, dtype or sample list in the same folder is refused with a StoreError. Reading a layer
range uses `safe_open(...).get_slice("activations")[:, l0:l1]`, so a 3000 x 32 x 4096 store is
never read whole to get a few layers. Never pickled.

    >>> store = probe(vlm, samples, "acts/")            # doctest: +SKIP
    >>> acts, labels, manifest = load_activations("acts/", layers=range(0, 8))   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from superneurons.errors import StoreError
from superneurons.models.base import same_fingerprint

if TYPE_CHECKING:
    from superneurons.data.samples import Sample
    from superneurons.models.base import VLM

MANIFEST_NAME = "manifest.json"
SHARD_PATTERN = "shard-{:05d}.safetensors"
ACTIVATIONS_KEY = "activations"
RANGE_KEY = "sample_range"
FORMAT_VERSION = 1
DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}
# Manifest fields a resumed run must match exactly, with what to say when one differs.
_IDENTITY = {"world_size": "number of processes (a distributed store: see superneurons.distributed)",
             "fingerprint": "model", "prompt_template": "prompt template", "token": "token position",
             "max_new_tokens": "max_new_tokens", "layers": "layer set", "dtype": "dtype",
             "shard_size": "shard size", "ids": "sample list (ids/order)", "labels": "labels"}


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    _atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


def _write_shard(path: Path, acts: torch.Tensor, start: int, stop: int) -> None:
    from safetensors.torch import save

    data = save({ACTIVATIONS_KEY: acts.contiguous(), RANGE_KEY: torch.tensor([start, stop], dtype=torch.int64)},
                metadata={"start": str(start), "stop": str(stop), "format": "pt"})
    _atomic_write_bytes(path, data)


def _shard_header(path: Path) -> tuple[int, int, list[int]] | None:
    """(start, stop, shape) of a shard file, or None if it cannot be read."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            shape = list(f.get_slice(ACTIVATIONS_KEY).get_shape())
            return int(meta["start"]), int(meta["stop"]), shape
    except Exception:  # a foreign or damaged file: treated as missing and rewritten
        return None


def probe(vlm: VLM, samples: Sequence[Sample], out_dir: str | Path, token: str = "first",
          layers: Iterable[int] | None = None, dtype: str = "float16", shard_size: int = 256,
          batch_size: int = 8, progress: bool = True, skip_bad: bool = False,
          exit_layer: int | None = None, max_new_tokens: int | None = None, require_labels: bool = True,
          on_shard: Callable[[int, Path], None] | None = None, prefix_reuse: bool = False,
          rank_split: bool = True) -> ActivationStore:
    """Capture activations of `samples` into a resumable store at `out_dir`; return it opened.

    `layers`/`exit_layer`/`token`/`batch_size` go to `capture`. `dtype`: how activations are
    stored (float16 default; float32 for exact values). Images are validated up front: a bad one
    raises a DataError naming the sample, or with `skip_bad=True` is skipped and listed in the
    manifest's `skipped`. With `require_labels` (probing) the set must hold both yes and no.
    `on_shard(index, path)` is called after each shard is committed. `prefix_reuse` encodes each
    image and shared prompt prefix once per shard (`superneurons.prefix`; token "first" only).
    Under torchrun / accelerate launch (WORLD_SIZE > 1) and with `rank_split`, each process
    probes its slice and rank 0 merges (`superneurons.distributed.probe_distributed`).
    """
    if rank_split:
        from superneurons.distributed import dist_info, probe_distributed

        if dist_info().distributed:
            return probe_distributed(vlm, samples, out_dir, token=token, layers=layers, dtype=dtype,
                                     shard_size=shard_size, batch_size=batch_size, progress=progress,
                                     skip_bad=skip_bad, exit_layer=exit_layer, max_new_tokens=max_new_tokens,
                                     require_labels=require_labels, on_shard=on_shard, prefix_reuse=prefix_reuse)
    from superneurons import __version__
    from superneurons.capture import DEFAULT_MAX_NEW_TOKENS, TOKENS, capture_batches, resolve_layers
    from superneurons.data.samples import validate_samples

    if token not in TOKENS:
        raise StoreError(f"token {token!r} is not one of {', '.join(TOKENS)}")
    if dtype not in DTYPES:
        raise StoreError(f"dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}")
    if token == "last" and exit_layer is not None:
        raise StoreError("--exit-layer needs token 'first': the last token exists only after a full generation")
    if batch_size < 1:
        raise StoreError(f"batch_size={batch_size}; use a positive batch size")
    if prefix_reuse and token != "first":
        raise StoreError("prefix reuse needs token 'first' (a shared prompt prefix); drop it for --token last")
    if shard_size < 1:
        raise StoreError(f"shard_size={shard_size}; use a positive number of samples per shard")
    try:
        chosen, stop = resolve_layers(vlm.num_layers, layers, exit_layer)
    except ValueError as exc:
        raise StoreError(str(exc)) from exc
    if max_new_tokens is None:
        max_new_tokens = DEFAULT_MAX_NEW_TOKENS
    good, skipped = validate_samples(samples, skip_bad=skip_bad, require_both_classes=require_labels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.glob(".*.tmp-*"):  # leftovers of a killed write
        tmp.unlink(missing_ok=True)

    n = len(good)
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION, "library_version": __version__,
        "model": vlm.name_or_path, "family": vlm.family, "fingerprint": vlm.fingerprint,
        "prompt_template": vlm.prompt_template, "token": token,
        "max_new_tokens": max_new_tokens if token == "last" else None,
        "layers": chosen, "exit_layer": stop, "hidden_size": vlm.hidden_size, "dtype": dtype,
        "shard_size": shard_size, "num_samples": n,
        "ids": [s.id for s in good], "labels": [s.label for s in good],
        "skipped": [{"id": sid, "reason": why} for sid, why in skipped],
        "shards": [], "complete": False, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    path = out / MANIFEST_NAME
    if path.is_file():
        old = _read_manifest(out)
        _check_same_run(old, manifest, out)
        manifest["created"] = old.get("created", manifest["created"])
    elif any(out.glob("shard-*.safetensors")):
        raise StoreError(f"{out} holds shard files but no {MANIFEST_NAME}; it is not a store this library "
                         "can resume: delete the folder or choose another --out")

    bounds = [(i, s, min(s + shard_size, n)) for i, s in enumerate(range(0, n, shard_size))]
    todo: list[tuple[int, int, int]] = []
    for i, start, end in bounds:
        file = out / SHARD_PATTERN.format(i)
        header = _shard_header(file) if file.is_file() else None
        if header == (start, end, [end - start, len(chosen), vlm.hidden_size]):
            manifest["shards"].append({"file": SHARD_PATTERN.format(i), "start": start, "stop": end})
        else:
            todo.append((i, start, end))
    manifest["complete"] = not todo
    _write_json(path, manifest)

    bar = None
    if progress and todo:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("[bold]probe[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn(), console=Console(stderr=True))
        bar.start()
        task = bar.add_task(f"{token} token, {len(chosen)} layers", total=n, completed=n - sum(e - s for _, s, e in todo))
    try:
        for i, start, end in todo:
            parts = []
            if prefix_reuse:
                from superneurons.prefix import capture_prefix

                batches = iter([capture_prefix(vlm, good[start:end], chosen, exit_layer, batch_size, warn=False)])
            else:
                batches = capture_batches(vlm, good[start:end], token, chosen, exit_layer, batch_size, max_new_tokens)
            for acts in batches:
                parts.append(acts)
                if bar is not None:
                    bar.advance(task, acts.shape[0])
            full = torch.cat(parts, dim=0)
            stored = full.to(DTYPES[dtype])
            if not bool(torch.isfinite(stored).all()) and bool(torch.isfinite(full).all()):
                raise StoreError(f"activations of samples {start}..{end - 1} overflow {dtype}; "
                                 "rerun with --dtype float32 into a new --out")
            shard = out / SHARD_PATTERN.format(i)
            _write_shard(shard, stored, start, end)
            manifest["shards"].append({"file": shard.name, "start": start, "stop": end})
            manifest["shards"].sort(key=lambda d: d["start"])
            manifest["complete"] = len(manifest["shards"]) == len(bounds)
            manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            _write_json(path, manifest)
            if on_shard is not None:
                on_shard(i, shard)
    finally:
        if bar is not None:
            bar.stop()
    return ActivationStore(out)


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise StoreError(f"{directory} has no {MANIFEST_NAME}: not an activation store; "
                         "create one with `superneurons probe --out DIR`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path} is not valid JSON ({exc}); the store is damaged: probe again into a new folder") from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise StoreError(f"{path}: store format {manifest.get('format_version')!r} is not {FORMAT_VERSION}; "
                         "probe again with this library version")
    return manifest


def same_field(key: str, a: Any, b: Any) -> bool:
    """Whether two manifests agree on `key`: equality, but fingerprints by `same_fingerprint` (their
    weight sketches match up to a tolerance, and manifests written before sketches have none)."""
    if key == "fingerprint":
        return same_fingerprint(a or {}, b or {})
    return a == b


def _check_same_run(old: dict[str, Any], new: dict[str, Any], out: Path) -> None:
    for key, what in _IDENTITY.items():
        if not same_field(key, old.get(key), new.get(key)):
            if key == "fingerprint":
                detail = " vs ".join(f"{m.get('model')!r} ({m[key].get('architecture')}, config "
                                     f"{str(m[key].get('config_hash'))[:12]}, weights {str(m[key].get('weights'))[:12]})"
                                     for m in (old, new))
            elif key in ("ids", "labels"):
                detail = f"{len(old.get(key) or [])} vs {len(new.get(key) or [])} samples, or a different order"
            else:
                detail = f"{old.get(key)!r} vs {new.get(key)!r}"
            raise StoreError(f"{out} already holds a store with a different {what}: {detail}. "
                             "Resume only with the same arguments; otherwise choose another --out or delete it")


class ActivationStore:
    """Read access to a store folder written by `probe`.

    Attributes: `manifest` (dict), `ids`, `labels` (LongTensor[N]: 1 yes, 0 no, -1 unlabelled),
    `num_samples`, `layers` (model layer indices stored, in order), `hidden_size`, `dtype`,
    `fingerprint`, `shard_paths`.
    """

    def __init__(self, directory: str | Path, allow_incomplete: bool = False) -> None:
        """Open the store at `directory`; `allow_incomplete` opens an interrupted one (manifest only)."""
        self.directory = Path(directory)
        self.manifest = _read_manifest(self.directory)
        m = self.manifest
        if not m.get("complete") and not allow_incomplete:
            done = sum(s["stop"] - s["start"] for s in m.get("shards", []))
            raise StoreError(f"{self.directory}: store is incomplete ({done}/{m.get('num_samples')} samples); "
                             "run the same probe command again to resume it")
        self.ids: list[str] = list(m["ids"])
        self.labels = torch.tensor([1 if lab == "yes" else 0 if lab == "no" else -1 for lab in m["labels"]],
                                   dtype=torch.long)
        self.layers: list[int] = list(m["layers"])
        self.hidden_size: int = int(m["hidden_size"])
        self.dtype: torch.dtype = DTYPES[m["dtype"]]
        self.fingerprint: dict[str, Any] = dict(m["fingerprint"])
        self.shards: list[dict[str, Any]] = sorted(m["shards"], key=lambda d: d["start"])
        self.shard_paths = [self.directory / s["file"] for s in self.shards]
        missing = [p.name for p in self.shard_paths if not p.is_file()]
        if missing:
            raise StoreError(f"{self.directory}: shard file(s) {missing[:3]} are missing; "
                             "run the same probe command again to rewrite them")
        self.num_samples = int(m["num_samples"])

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (f"ActivationStore({str(self.directory)!r}, N={self.num_samples}, layers={len(self.layers)}, "
                f"D={self.hidden_size}, {self.manifest['dtype']}, token={self.manifest['token']!r})")

    def _positions(self, layers: Iterable[int] | None) -> list[int]:
        if layers is None:
            return list(range(len(self.layers)))
        where = {layer: i for i, layer in enumerate(self.layers)}
        wanted = [int(x) for x in layers]
        absent = [x for x in wanted if x not in where]
        if absent:
            raise StoreError(f"layer(s) {absent} are not in the store (it holds {_ranges(self.layers)}); "
                             "probe again with --layers including them")
        return [where[x] for x in wanted]

    def read(self, layers: Iterable[int] | None = None) -> torch.Tensor:
        """Tensor[N, len(layers), D] in the stored dtype; `layers` are model layer indices.

        Each shard is sliced on the layer axis (`get_slice`), so only the requested layers are read.
        """
        from safetensors import safe_open

        if not self.manifest.get("complete"):
            raise StoreError(f"{self.directory}: store is incomplete; run the same probe command again to resume it")
        pos = self._positions(layers)
        if not pos:
            raise StoreError("read(layers=[]) asks for no layer; pass None for all")
        lo, hi = min(pos), max(pos) + 1
        contiguous = pos == list(range(lo, hi))
        out = torch.empty((self.num_samples, len(pos), self.hidden_size), dtype=self.dtype)
        for shard, path in zip(self.shards, self.shard_paths, strict=True):
            with safe_open(str(path), framework="pt") as f:
                part = f.get_slice(ACTIVATIONS_KEY)[:, lo:hi]
            if not contiguous:
                part = part[:, [p - lo for p in pos]]
            if part.shape[0] != shard["stop"] - shard["start"]:
                raise StoreError(f"{path.name} holds {part.shape[0]} samples, the manifest says "
                                 f"{shard['stop'] - shard['start']}; the store is damaged: probe again")
            out[shard["start"]:shard["stop"]] = part
        return out

    def iter_layer_chunks(self, chunk_layers: int) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Yield (layer indices, Tensor[N, l, D]) for consecutive groups of `chunk_layers` stored layers."""
        if chunk_layers < 1:
            raise StoreError(f"chunk_layers={chunk_layers}; use a positive number of layers per chunk")
        for i in range(0, len(self.layers), chunk_layers):
            group = self.layers[i:i + chunk_layers]
            yield group, self.read(group)


def _ranges(values: Sequence[int]) -> str:
    if not values:
        return "no layers"
    parts, start, prev = [], values[0], values[0]
    for v in [*values[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(f"{start}-{prev}" if prev != start else f"{start}")
        if v is not None:
            start = prev = v
    return "layers " + ",".join(parts)


def load_activations(directory: str | Path, layers: Iterable[int] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(acts [N, l, D] in the stored dtype, labels LongTensor[N], manifest) of a complete store.

    Pass `layers` (model layer indices) to read only those; for streaming over all layers use
    `ActivationStore(dir).iter_layer_chunks(k)`.
    """
    store = ActivationStore(directory)
    return store.read(layers), store.labels, store.manifest
