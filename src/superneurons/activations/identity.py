"""What a store holds, as digests: each sample's content identity and each shard's tensor checksums.

A sample's identity is (id, label, question text, sha256 of the image file's bytes; for an
in-memory PIL image, of its size and RGB bytes), digested by `sample_digests`; the manifest records
one digest per sample (`sample_digests`), so a resumed probe reuses a shard only when every sample
in its range is the same, and says which changed. A shard records in its safetensors metadata its
sample range, the digest of its samples' identities (`identity_digest`) and one checksum per stored
layer of its tensor bytes (`layer_checksums`); the manifest repeats them, and `ActivationStore`
compares both when it opens a shard. The checksums are per layer because `select` reads a store a
few layers at a time: each read checks exactly the bytes it read, in one extra pass over memory,
and `CheckedFiles` remembers what was verified, so an unchanged file is not hashed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from superneurons.errors import DataError
from superneurons.utils.files import write_json

if TYPE_CHECKING:
    from superneurons.data.samples import Sample

DIGEST_CHARS = 32  #: hex characters kept of a sample's sha256 (128 bits)
CHECKSUM = "blocksum64-per-layer"  #: the checksum scheme recorded in shard metadata and the manifest
_CHUNK = 1 << 20
_BLOCK_WORDS = 512  # 4 KiB, a filesystem block
_ODD = 0x9E3779B97F4A7C15 - (1 << 64)  # the golden-ratio constant, as a signed int64
_MASK = (1 << 64) - 1
_INTS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def image_digest(sample: Sample) -> str:
    """sha256 (hex) of the sample's image file bytes, or of an in-memory image's size and RGB bytes."""
    from PIL import Image

    h = hashlib.sha256()
    if isinstance(sample.image, Image.Image):
        rgb = sample.image.convert("RGB")
        h.update(f"pil:{rgb.width}x{rgb.height}:".encode())
        h.update(rgb.tobytes())
        return h.hexdigest()
    try:
        with Path(sample.image).open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    except OSError as exc:
        raise DataError(f"sample {sample.id!r}: image file {str(sample.image)!r} cannot be read ({exc}); "
                        "fix the path or pass --skip-bad") from exc
    return h.hexdigest()


def sample_digests(samples: Sequence[Sample]) -> list[str]:
    """One digest per sample of (id, label, question, image bytes): equal digests, equal inputs."""
    out = []
    for s in samples:
        key = json.dumps([s.id, s.label, s.question, image_digest(s)], ensure_ascii=True)
        out.append(hashlib.sha256(key.encode()).hexdigest()[:DIGEST_CHARS])
    return out


def identity_digest(digests: Sequence[str]) -> str:
    """The digest of a shard's samples: sha256 (hex) of their digests in order."""
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def layer_checksums(acts: torch.Tensor) -> list[str]:
    """One checksum per layer of a shard's activations [n, l, D] (of the bytes of `acts[:, j]`), vectorized.

    The tensor bytes are read as 64-bit words and summed per 4 KiB block (per row when a row is
    shorter); a layer's checksum is the plain sum of its blocks and their position-weighted sum (mod
    2^64), so a changed, zeroed or lost block, or blocks and rows in the wrong place, change it. One
    pass over memory at the speed of a sum, several times faster than CRC-32 or sha256 here.
    """
    if acts.dim() != 3:
        raise ValueError(f"layer_checksums needs [n, l, D], got {list(acts.shape)}")
    n, layers, d = acts.shape
    acts = acts.contiguous()
    if (d * acts.element_size()) % 8 == 0:
        words = acts.view(torch.int64)  # no copy
    else:  # odd row sizes (tiny test models): widen each element to a word
        words = acts.view(_INTS[acts.element_size()]).to(torch.int64)
    per_row = words.shape[-1]
    block = math.gcd(per_row, _BLOCK_WORDS)
    blocks = words.reshape(n, layers, per_row // block, block).sum(-1)  # [n, l, B], wraps mod 2^64
    weights = torch.arange(1, n * blocks.shape[-1] + 1, dtype=torch.int64).mul_(_ODD).view(n, 1, -1)
    plain, weighted = blocks.sum((0, 2)).tolist(), (blocks * weights).sum((0, 2)).tolist()
    return [f"{a & _MASK:016x}{b & _MASK:016x}" for a, b in zip(plain, weighted, strict=True)]


def changed_ids(ids: Sequence[str], old: Sequence[str], new: Sequence[str]) -> list[str]:
    """The ids whose digest differs between two equally long digest lists."""
    return [i for i, a, b in zip(ids, old, new, strict=True) if a != b]


def id_list(ids: Sequence[str], limit: int = 5) -> str:
    """`'a', 'b', ... (+N more)` for messages."""
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (f" (+{len(ids) - limit} more)" if len(ids) > limit else "")


CHECKED_NAME = ".checked.json"  #: in a store folder: which shard layers were verified, per file state
_SETTLED_NS = 2_000_000_000  # a file's state is trusted once it is this old (timestamps are coarse)


def file_state(path: Path) -> list[int]:
    """(inode, size, mtime, ctime) of a file: any write, truncation, copy or replacement changes it."""
    st = path.stat()
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class CheckedFiles:
    """Which stored layers of which shard files had their bytes verified, keyed by the file's state.

    Hashing a shard's bytes costs a pass over memory; a store is read many times but changes rarely.
    `.checked.json` records, per shard file, its `file_state` and the layer positions whose checksums
    matched (the writer records what it wrote), so bytes are hashed again only after the file changed
    (a write always changes mtime and ctime; a copy, the inode). Unwritable folders just hash every time.
    A file modified in the last two seconds is verified but not recorded.
    """

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / CHECKED_NAME
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        self.dirty = False

    def verified(self, name: str, path: Path, positions: range) -> bool:
        entry = self.data.get(name)
        try:
            return (isinstance(entry, dict) and entry.get("state") == file_state(path)
                    and set(positions) <= set(entry.get("layers", [])))
        except OSError:
            return False

    def mark(self, name: str, path: Path, positions: range) -> None:
        """Record that `positions` of `path` matched their checksums (not for a file changed in the last
        seconds: timestamps are coarse, so a change right after could keep the state, as in "racy git")."""
        state, entry = file_state(path), self.data.get(name)
        if time.time_ns() - max(state[2], state[3]) < _SETTLED_NS:
            return
        if not isinstance(entry, dict) or entry.get("state") != state:
            entry = {"state": state, "layers": []}
        entry["layers"] = sorted(set(entry["layers"]) | set(positions))
        self.data[name] = entry
        self.dirty = True

    def save(self) -> None:
        if self.dirty:
            with contextlib.suppress(OSError):  # a read-only store: verified again next time
                write_json(self.path, self.data, indent=None)
            self.dirty = False
