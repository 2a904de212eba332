"""Helpers for the input and predict reliability tests: a saved tiny classifier, data files with one
bad record, and images that fail only when their pixels are decoded."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

from conftest import write_dataset


def make_classifier(tiny_llava, root: Path, top_k: int = 3) -> Path:
    """A classifier folder fitted on a tiny LLaVA's probe of 16 samples."""
    from superneurons.activations.probing import probe
    from superneurons.data import load_samples
    from superneurons.inference.classifier import fit_classifier

    store = probe(tiny_llava, load_samples(write_dataset(root / "train", 16, seed=1)), root / "acts",
                  dtype="float32", progress=False)
    out = root / f"clf-{top_k}"
    fit_classifier(store, top_k=top_k).classifier.save(out)
    return out


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_records(path: Path, recs: list[dict], encoding: str = "utf-8", ensure_ascii: bool = True) -> Path:
    path.write_bytes("".join(json.dumps(r, ensure_ascii=ensure_ascii) + "\n" for r in recs).encode(encoding))
    return path


def with_image(data: Path, index: int, image: str) -> Path:
    """`data` rewritten with record `index` pointing at `image` (relative to the data file)."""
    recs = records(data)
    recs[index]["image"] = image
    return write_records(data, recs)


def corrupt_pixels(png: Path) -> Path:
    """Damage the compressed pixels of a PNG but keep every chunk checksum valid: the header and
    `PIL.Image.verify` pass, decoding fails (an image that breaks only late, inside a run)."""
    raw = bytearray(png.read_bytes())
    pos = raw.index(b"IDAT") - 4
    length = struct.unpack(">I", raw[pos:pos + 4])[0]
    data = bytearray(raw[pos + 8:pos + 8 + length])
    for i in range(2, len(data) - 4):  # keep the zlib header, scramble the deflate stream
        data[i] ^= 0xA5
    raw[pos + 8:pos + 8 + length] = data
    raw[pos + 8 + length:pos + 12 + length] = struct.pack(">I", zlib.crc32(b"IDAT" + bytes(data)) & 0xFFFFFFFF)
    png.write_bytes(bytes(raw))
    return png
