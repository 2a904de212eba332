"""Fixtures of the conformance suite: every family's tiny checkpoint, built once per session.

`family_dir(model_type)` builds `superneurons.testing.families.FAMILY_BUILDERS[model_type]` into a
session folder on first use (then returns the cached path); `family_vlm(model_type)` loads it with
`load_model` (CPU, float32) once. `samples` are 3 images with questions of different lengths (so
a batch is left padded); `shared_samples` ask 3 questions about one image and 1 about another.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from superneurons.data.samples import Sample

QUESTIONS = ["Is there a dog ?", "Is there a red cube on the left in the image ?",
             "Answer with yes or no : is there a small blue sphere behind the car in this picture ?"]


@pytest.fixture(scope="session")
def family_dir(tmp_path_factory: pytest.TempPathFactory):
    from superneurons.testing.families import make_tiny_family

    built: dict[str, Path] = {}

    def get(model_type: str) -> Path:
        if model_type not in built:
            built[model_type] = make_tiny_family(model_type, tmp_path_factory.mktemp(model_type))
        return built[model_type]

    return get


@pytest.fixture(scope="session")
def family_vlm(family_dir):
    from superneurons.models import load_model

    loaded: dict[str, object] = {}

    def get(model_type: str):
        if model_type not in loaded:
            loaded[model_type] = load_model(str(family_dir(model_type)), dtype="float32", device="cpu")
        return loaded[model_type]

    return get


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four 24 px PNGs of different colours, with noise."""
    import random

    from PIL import Image

    root = tmp_path_factory.mktemp("conformance-images")
    rng = random.Random(0)
    out = []
    for i, base in enumerate([(220, 40, 40), (40, 40, 220), (40, 200, 40), (200, 200, 40)]):
        im = Image.new("RGB", (24, 24), base)
        px = im.load()
        for _ in range(96):
            px[rng.randrange(24), rng.randrange(24)] = tuple(rng.randrange(256) for _ in range(3))
        out.append(root / f"im{i}.png")
        im.save(out[-1])
    return out


@pytest.fixture(scope="session")
def samples(images) -> list[Sample]:
    return [Sample(id=f"s{i}", image=images[i], question=q, label=("yes", "no")[i % 2])
            for i, q in enumerate(QUESTIONS)]


@pytest.fixture(scope="session")
def shared_samples(images) -> list[Sample]:
    own = [Sample(id=f"p{i}", image=images[0], question=q, label="yes") for i, q in enumerate(QUESTIONS)]
    return [*own, Sample(id="p3", image=images[3], question=QUESTIONS[1], label="no")]
