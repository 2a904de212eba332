"""What a store holds, as digests: each sample's content identity and each shard's tensor checksums.

A sample's identity is (id, label, question text, sha256 of the image file's bytes; for an
in-memory PIL image, of its size and RGB bytes), digested by `sample_digests`; the manifest records
one digest per sample (`sample_digests`), so a resumed probe reuses a shard only when every sample
in its range is the same, and says which changed. A shard records in its safetensors metadata its
sample range, the digest of its samples' identities (`identity_digest`) and one CRC-32 per stored
layer of its tensor bytes (`layer_checksums`); the manifest repeats them, and `ActivationStore`
compares both when it opens a shard. The CRCs are per layer because `select` reads a store a few
layers at a time: each read checks exactly the bytes it read, in one extra pass over memory.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from superneurons.errors import DataError

if TYPE_CHECKING:
    from superneurons.data.samples import Sample

DIGEST_CHARS = 32  #: hex characters kept of a sample's sha256 (128 bits)
CHECKSUM = "crc32-per-layer"  #: the checksum scheme recorded in shard metadata and the manifest
_CHUNK = 1 << 20


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


def layer_checksum(values: torch.Tensor) -> str:
    """CRC-32 (8 hex) of a tensor's bytes in row-major order (copied to contiguous memory if needed)."""
    flat = values.contiguous().view(-1).view(torch.uint8)
    return format(zlib.crc32(flat.numpy()), "08x")


def layer_checksums(acts: torch.Tensor) -> list[str]:
    """One checksum per layer of a shard's activations [n, l, D]: of `acts[:, j]`."""
    return [layer_checksum(acts[:, j]) for j in range(acts.shape[1])]


def changed_ids(ids: Sequence[str], old: Sequence[str], new: Sequence[str]) -> list[str]:
    """The ids whose digest differs between two equally long digest lists."""
    return [i for i, a, b in zip(ids, old, new, strict=True) if a != b]


def id_list(ids: Sequence[str], limit: int = 5) -> str:
    """`'a', 'b', ... (+N more)` for messages."""
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (f" (+{len(ids) - limit} more)" if len(ids) > limit else "")
