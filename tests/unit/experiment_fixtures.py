"""Helpers for the experiments' tests (test_experiments_*): a private tiny LLaVA and small data sets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from conftest import write_dataset
from superneurons.data import Sample, load_samples


def load_exp_vlm(path: Path):
    """The tiny LLaVA loaded again (not the shared fixture: its generation config is changed).

    A random model can generate its own `<image>` token, which makes a second forward over prompt +
    answer (the `last` token capture) fail: generation is told never to emit it.
    """
    from superneurons.models import load_model

    vlm = load_model(str(path), dtype="float32", device="cpu")
    vlm.model.generation_config.suppress_tokens = [vlm.model.config.image_token_id]
    return vlm


def probe_val(root: Path, n_probe: int = 16, n_val: int = 12) -> tuple[list[Sample], list[Sample]]:
    """Balanced probing and validation sets (red = yes, blue = no images), disjoint ids."""
    probe = load_samples(write_dataset(root, n_probe, name="probe.jsonl", seed=1))
    val = load_samples(write_dataset(root, n_val, name="val.jsonl", seed=2))
    return probe, [replace(s, id=f"v{s.id}") for s in val]


def with_questions(samples: list[Sample], template: str) -> list[Sample]:
    """The samples with question `template.format(i=index)`."""
    return [replace(s, question=template.format(i=i)) for i, s in enumerate(samples)]
