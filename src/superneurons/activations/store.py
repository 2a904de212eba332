"""The activation store: H in R^{N x L x D} on disk, as sharded safetensors + manifest.json.

This module owns the files of a store: writing shards and reading them back (`ActivationStore`,
`load_activations`); the probe driver (`superneurons.activations.probing`) fills a store with the
activations the paper's Alg. 1 scores. Layout of a store folder:

    manifest.json              what was captured: model fingerprint, prompt template, token,
                               layers, dtype, sample ids + labels in order, one content digest
                               per sample, skipped samples, shard list (range, identity digest,
                               per-layer checksums), `complete` flag, library version
    shard-00000.safetensors    tensor "activations" [n, l, D] (stored dtype) for samples
    shard-00001.safetensors    [start, stop) (tensor "sample_range"; metadata: the range, the
                               identity digest of its samples, per-layer checksums)
    .superneurons.lock         held by the probe writing the folder (one writer per folder)
    .checked.json              which shard layers were verified, per file state

Every file is written to a temporary name and moved into place with `os.replace`, so a killed
run leaves only whole shards; running `probe` again with the same arguments resumes after the
last whole shard (no sample lost or duplicated), reusing a shard only when its samples' content
(`superneurons.activations.identity`: id, label, question, image bytes) is unchanged and its bytes
match their checksums. A different model, prompt template, token, layer set, dtype or sample list
in the same folder is refused with a StoreError. Reading a layer range uses
`safe_open(...).get_slice("activations")[:, l0:l1]`, so a 3000 x 32 x 4096 store is never read
whole to get a few layers; each shard's header is compared with the manifest (range, identity)
and the bytes read with their checksums (skip those with `verify=False`). A damaged, truncated or
swapped shard raises a StoreError naming it: running the same probe again recomputes it. Stores
written before content checks (no `sample_digests`) still open, with a warning, unchecked; they
cannot be resumed (their content cannot be compared): probe into a new folder. Never pickled.

    >>> store = probe(vlm, samples, "acts/")            # doctest: +SKIP
    >>> acts, labels, manifest = load_activations("acts/", layers=range(0, 8))   # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from superneurons.activations.identity import CHECKSUM, CheckedFiles, identity_digest, layer_checksums
from superneurons.constants import MANIFEST_NAME
from superneurons.errors import StoreError
from superneurons.models.fingerprint import describe, same_fingerprint
from superneurons.utils.files import atomic_write_bytes, read_json

ACTIVATIONS_KEY = "activations"
RANGE_KEY = "sample_range"
FORMAT_VERSION = 1
DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}
# Manifest fields a resumed run must match exactly, with what to say when one differs.
_IDENTITY = {"world_size": "number of processes (a distributed store: see superneurons.activations.distributed)",
             "fingerprint": "model", "prompt_template": "prompt template", "token": "token position",
             "max_new_tokens": "max_new_tokens", "layers": "layer set", "dtype": "dtype",
             "shard_size": "shard size", "ids": "sample list (ids/order)", "labels": "labels"}
REPAIR = ("the shard is damaged or belongs to another store: run the same probe command again, which recomputes "
          "it (or probe into a new --out)")


def write_shard(path: Path, acts: torch.Tensor, start: int, stop: int, identity: str | None = None) -> dict[str, Any]:
    """Write one shard (activations of samples [start, stop)) atomically; return its manifest entry.

    The metadata records the range, `identity` (the digest of the samples' identities,
    `identity.identity_digest`) and one checksum per layer of the tensor bytes.
    """
    from safetensors.torch import save

    acts = acts.contiguous()
    sums = layer_checksums(acts)
    meta = {"start": str(start), "stop": str(stop), "format": "pt", "checksum": CHECKSUM, "checksums": ",".join(sums)}
    if identity is not None:
        meta["identity"] = identity
    data = save({ACTIVATIONS_KEY: acts, RANGE_KEY: torch.tensor([start, stop], dtype=torch.int64)}, metadata=meta)
    atomic_write_bytes(path, data)
    entry: dict[str, Any] = {"file": path.name, "start": start, "stop": stop, "checksums": sums}
    if identity is not None:
        entry["identity"] = identity
    return entry


@dataclass(frozen=True)
class ShardInfo:
    """What a shard file's header says: its range, shape, identity digest and layer checksums."""

    start: int
    stop: int
    shape: list[int]
    identity: str | None
    checksums: list[str] | None


def shard_info(path: Path) -> ShardInfo | None:
    """The header of a shard file, or None if it cannot be read (a foreign or damaged file)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return _info(f.metadata() or {}, f.get_slice(ACTIVATIONS_KEY).get_shape())
    except Exception:  # a foreign or damaged file: treated as missing and rewritten
        return None


def _info(meta: dict[str, str], shape: Sequence[int]) -> ShardInfo:
    sums = meta.get("checksums") if meta.get("checksum") == CHECKSUM else None
    return ShardInfo(int(meta["start"]), int(meta["stop"]), list(shape), meta.get("identity"),
                     sums.split(",") if sums else None)


def verify_layers(path: Path, part: torch.Tensor, first: int, expected: Sequence[str]) -> None:
    """Raise a StoreError naming `path` unless layers `first`.. of `part` [n, l, D] match their checksums."""
    for j, got in enumerate(layer_checksums(part)):
        if got != expected[first + j]:
            raise StoreError(f"{path}: the tensor bytes of stored layer position {first + j} do not match the "
                             f"shard's checksum; {REPAIR}")


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise StoreError(f"{directory} has no {MANIFEST_NAME}: not an activation store; "
                         "create one with `superneurons probe --out DIR`")
    manifest = read_json(path, StoreError, "the store is damaged: probe again into a new folder")
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


def check_same_run(old: dict[str, Any], new: dict[str, Any], out: Path) -> None:
    for key, what in _IDENTITY.items():
        if not same_field(key, old.get(key), new.get(key)):
            if key == "fingerprint":
                detail = " vs ".join(f"{m.get('model')!r} ({describe(m[key])})" for m in (old, new))
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

    def __init__(self, directory: str | Path, allow_incomplete: bool = False, verify: bool = True) -> None:
        """Open the store at `directory`; `allow_incomplete` opens an interrupted one (manifest only).

        Every shard's header (range, identity digest, checksums) is compared with the manifest when
        a read opens it; `verify=False` skips only the checksums of the tensor bytes (for speed).
        """
        self.directory = Path(directory)
        self.manifest = read_manifest(self.directory)
        self.verify = verify
        m = self.manifest
        if not m.get("complete") and not allow_incomplete:
            done = sum(s["stop"] - s["start"] for s in m.get("shards", []))
            raise StoreError(f"{self.directory}: store is incomplete ({done}/{m.get('num_samples')} samples); "
                             "run the same probe command again to resume it")
        self.digests: list[str] | None = m.get("sample_digests")
        if self.digests is None and m.get("complete"):
            warnings.warn(f"{self.directory} was written by an older superneurons without content checks: its shards "
                          "are read without identity or checksum verification; probe again into a new --out to "
                          "get a checked store", UserWarning, stacklevel=2)
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
        checked = CheckedFiles(self.directory)
        for shard, path in zip(self.shards, self.shard_paths, strict=True):
            try:
                with safe_open(str(path), framework="pt") as f:
                    info = self._check_header(shard, path, f.metadata() or {}, f.get_slice(ACTIVATIONS_KEY).get_shape())
                    part = f.get_slice(ACTIVATIONS_KEY)[:, lo:hi]
            except StoreError:
                raise
            except Exception as exc:  # safetensors raises its own error types for a truncated or foreign file
                raise StoreError(f"{path}: cannot be read as a shard ({type(exc).__name__}: {exc}); {REPAIR}") from exc
            if self.verify and info.checksums is not None and not checked.verified(shard["file"], path, range(lo, hi)):
                verify_layers(path, part, lo, info.checksums)
                checked.mark(shard["file"], path, range(lo, hi))  # hashed again only once the file changes
            if not contiguous:
                part = part[:, [p - lo for p in pos]]
            out[shard["start"]:shard["stop"]] = part
        checked.save()
        return out

    def _check_header(self, shard: dict[str, Any], path: Path, meta: dict[str, str], shape: Sequence[int]) -> ShardInfo:
        """The shard's header, checked against its manifest entry (range, sample identities, checksums)."""
        n = shard["stop"] - shard["start"]
        start = shard.get("local_start", shard["start"])  # rank stores of a merged store count from 0
        try:
            info = _info(meta, shape)
        except (KeyError, ValueError):
            raise StoreError(f"{path}: the shard has no sample range in its metadata; {REPAIR}") from None
        if (info.start, info.stop) != (start, start + n) or info.shape[:1] != [n]:
            raise StoreError(f"{path} holds samples {info.start}..{info.stop - 1} ({info.shape[0]} rows), the manifest "
                             f"says {start}..{start + n - 1}; {REPAIR}")
        if self.digests is None:
            return info  # a store written before content checks: nothing to compare with
        if info.identity != identity_digest(self.digests[shard["start"]:shard["stop"]]):
            raise StoreError(f"{path} holds activations of other samples than the manifest lists for it (ids "
                             f"{self.ids[shard['start']]!r}..{self.ids[shard['stop'] - 1]!r}); {REPAIR}")
        if info.checksums is None or len(info.checksums) != len(self.layers) or info.checksums != shard.get("checksums"):
            raise StoreError(f"{path}: its tensor checksums differ from the manifest's; {REPAIR}")
        return info

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


def load_activations(directory: str | Path, layers: Iterable[int] | None = None, verify: bool = True
                     ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(acts [N, l, D] in the stored dtype, labels LongTensor[N], manifest) of a complete store.

    Pass `layers` (model layer indices) to read only those; for streaming over all layers use
    `ActivationStore(dir).iter_layer_chunks(k)`. `verify=False` skips the tensor checksums.
    """
    store = ActivationStore(directory, verify=verify)
    return store.read(layers), store.labels, store.manifest
