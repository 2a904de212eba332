"""Shared test fixtures: tiny random VLMs saved to folders, and small image datasets. No network.

Fixtures (import nothing; pytest injects them by name; keep these names stable):

- `tiny_llava_dir`, `tiny_qwen2vl_dir`, `tiny_qwen25vl_dir`, `tiny_qwen3vl_dir` (session): `Path` of a
  folder written by `superneurons.models.factory` (`save_pretrained`: weights, config, local
  tokenizer, image processor, chat template). LLaVA: 4 layers, hidden 64, 28 px images;
  Qwen: 3 layers, hidden 64, 28 px images (one image token).
- `tiny_llava`, `tiny_qwen2vl`, `tiny_qwen3vl` (session): those folders loaded with `load_model` on
  CPU in float32. Shared across tests: do not modify their weights.
- `make_dataset` (function): `make_dataset(tmp_path, n, ...) -> Path` of a JSONL in the standard
  layout with `n` balanced samples and 24 px PNGs (see `write_dataset`, also importable with
  `from conftest import write_dataset`).
- `dataset` (function): `make_dataset(tmp_path, 8)` already called.

The session sets HF_HUB_OFFLINE=1, 2 torch threads and seed 0.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)

_COLORS = {"yes": (220, 40, 40), "no": (40, 40, 220)}
_OBJECTS = ["dog", "cat", "car", "cup", "bus", "bird", "chair", "book"]


def write_dataset(root: str | Path, n: int, name: str = "data.jsonl", image_size: int = 24, seed: int = 0,
                  labels: list[str] | None = None) -> Path:
    """Write `n` samples (PNG images + JSONL, image paths relative) under `root`; return the JSONL path.

    Labels alternate yes/no (balanced) unless `labels` is given. "yes" images are mostly red,
    "no" images mostly blue (with noise), so a probe has a real signal; questions vary.
    """
    from PIL import Image

    root = Path(root)
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    labels = labels or [("yes", "no")[i % 2] for i in range(n)]
    path = root / name
    with path.open("w", encoding="utf-8") as fh:
        for i, label in enumerate(labels[:n]):
            base = _COLORS[label]
            im = Image.new("RGB", (image_size, image_size), base)
            px = im.load()
            for _ in range(image_size * 2):
                x, y = rng.randrange(image_size), rng.randrange(image_size)
                px[x, y] = tuple(min(255, max(0, c + rng.randint(-60, 60))) for c in base)
            rel = f"images/{name.split('.')[0]}-{i:04d}.png"
            im.save(root / rel)
            where = " on the left" * (i % 3)  # different lengths, so batches are padded
            q = f"Is there a {_OBJECTS[i % len(_OBJECTS)]}{where} in the image ? Answer with yes or no ."
            fh.write(json.dumps({"id": f"s{i:04d}", "image": rel, "question": q, "label": label}) + "\n")
    return path


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    random.seed(0)


@pytest.fixture
def make_dataset():
    """`make_dataset(tmp_path, n, name="data.jsonl", image_size=24, seed=0, labels=None) -> Path`."""
    return write_dataset


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A JSONL of 8 balanced samples with PNG images in `tmp_path`."""
    return write_dataset(tmp_path, 8)


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from superneurons.testing.factory import make_tiny_llava

    return make_tiny_llava(tmp_path_factory.mktemp("tiny-llava"), text_layers=4, hidden=64, vision_hidden=32)


@pytest.fixture(scope="session")
def tiny_qwen2vl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from superneurons.testing.factory import make_tiny_qwen_vl

    return make_tiny_qwen_vl(tmp_path_factory.mktemp("tiny-qwen2vl"), version="qwen2_vl")


@pytest.fixture(scope="session")
def tiny_qwen25vl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from superneurons.testing.factory import make_tiny_qwen_vl

    return make_tiny_qwen_vl(tmp_path_factory.mktemp("tiny-qwen25vl"), version="qwen2_5_vl")


@pytest.fixture(scope="session")
def tiny_qwen3vl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from superneurons.testing.factory import make_tiny_qwen_vl

    return make_tiny_qwen_vl(tmp_path_factory.mktemp("tiny-qwen3vl"), version="qwen3_vl")


def _load(path: Path):
    from superneurons.models import load_model

    return load_model(str(path), dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def tiny_llava(tiny_llava_dir: Path):
    """The tiny LLaVA loaded through `load_model` (CPU, float32)."""
    return _load(tiny_llava_dir)


@pytest.fixture(scope="session")
def tiny_qwen2vl(tiny_qwen2vl_dir: Path):
    """The tiny Qwen2-VL loaded through `load_model` (CPU, float32)."""
    return _load(tiny_qwen2vl_dir)


@pytest.fixture(scope="session")
def tiny_qwen3vl(tiny_qwen3vl_dir: Path):
    """The tiny Qwen3-VL loaded through `load_model` (CPU, float32)."""
    return _load(tiny_qwen3vl_dir)
