"""experiments/shuffled.py: the Im / Txt shuffles keep no image-question pair (even with repeated
images and questions, as in POPE), move only one side, keep labels; the experiment runs."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from experiment_fixtures import load_exp_vlm, probe_val

from superneurons.data import Sample
from superneurons.errors import DataError
from superneurons.experiments import pairs_in_original, pairs_kept, run_experiment, shuffle_pairs
from superneurons.experiments._common import ExperimentOptions


def _pope_like(tmp_path) -> list[Sample]:
    """6 images x 2 questions; each question text is asked about 2 images (POPE repeats both)."""
    from PIL import Image

    objs = ["dog", "cat", "car", "bus", "cup", "bird"]
    out = []
    for i in range(6):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(path)
        for j in range(2):
            obj = objs[(i + j) % 6]
            out.append(Sample(f"i{i}q{j}", path, f"Is there a {obj} in the image?", ("yes", "no")[(i + j) % 2]))
    return out


@pytest.mark.parametrize("mode", ["image", "question"])
def test_no_pair_is_kept(tmp_path, mode):
    samples = _pope_like(tmp_path)
    for seed in range(5):
        out = shuffle_pairs(samples, mode, seed)
        assert pairs_kept(samples, out) == 0 and pairs_in_original(samples, out) == 0
        assert [s.label for s in out] == [s.label for s in samples]
        moved, kept = ("image", "question") if mode == "image" else ("question", "image")
        assert [getattr(s, kept) for s in out] == [getattr(s, kept) for s in samples]
        # a permutation: every image / question is used as often as before
        assert Counter(str(getattr(s, moved)) for s in out) == Counter(str(getattr(s, moved)) for s in samples)
        assert all(s.id.endswith("~im" if mode == "image" else "~txt") for s in out)
        assert all(s.meta["shuffled"][mode] != s.id.split("~")[0] for s in out)


def test_shuffle_is_deterministic_and_seeded(tmp_path):
    samples = _pope_like(tmp_path)
    a, b = shuffle_pairs(samples, "image", 0), shuffle_pairs(samples, "image", 0)
    assert [s.image for s in a] == [s.image for s in b]
    assert [s.image for s in shuffle_pairs(samples, "image", 1)] != [s.image for s in a]


def test_repeated_parts_are_never_put_back(tmp_path):
    samples = _pope_like(tmp_path)
    # one question for every image: images still move, though every new pair exists somewhere
    same_q = [replace(s, question="Is there a dog?") for s in samples]
    out = shuffle_pairs(same_q, "image", 0)
    assert all(str(a.image) != str(b.image) for a, b in zip(same_q, out, strict=True))
    assert pairs_kept(same_q, out) == 0 and pairs_in_original(same_q, out) == len(out)
    with pytest.raises(DataError, match="too few distinct questions"):
        shuffle_pairs(same_q, "question")
    same_image = [replace(s, image=samples[0].image) for s in samples]
    with pytest.raises(DataError, match="too few distinct images"):
        shuffle_pairs(same_image, "image")
    with pytest.raises(DataError, match="not image or question"):
        shuffle_pairs(samples, "label")


def test_shuffled_experiment_end_to_end(tiny_llava_dir, tmp_path):
    vlm = load_exp_vlm(tiny_llava_dir)
    probe, val = probe_val(tmp_path, 12, 8)
    truth = {s.image: s.label for s in val}  # the toy images carry their answer (red = yes)
    res = run_experiment("shuffled", vlm, probe=probe, val=val, out_dir=tmp_path / "out",
                         relabel=lambda s: truth[s.image], options=ExperimentOptions(max_new_tokens=2))
    assert res.meta["pairs_kept"] == {"data-Im": 0, "data-Txt": 0}
    assert res.meta["pairs_in_original"] == {"data-Im": 0, "data-Txt": 0}
    rows = {(r["dataset"], r["labels"], r["method"]): r for r in res.rows}
    assert set(rows) >= {("data", "original", "SNs (mean)"), ("data-Im", "original", "SNs (vote)"),
                         ("data-Txt", "true", "model"), ("data-Im", "true", "SNs (mean)")}
    # the SNs read the image: with images moved, they follow the image, not the question's label
    assert rows[("data", "original", "SNs (mean)")]["accuracy"] > 0.9
    assert rows[("data-Im", "true", "SNs (mean)")]["accuracy"] > 0.9
    assert rows[("data-Im", "original", "SNs (mean)")]["accuracy"] < 0.9


def test_synthetic_presence_truth_follows_the_scene(tmp_path):
    from superneurons.data import load_samples
    from superneurons.experiments.demo import synth_presence_truth
    from superneurons.synth import generate_benchmark

    paths = generate_benchmark(tmp_path, {"val": 16}, families=["presence"])
    val = load_samples(paths["val"]["presence"])
    assert [synth_presence_truth(s) for s in val] == [s.label for s in val]
    broken = shuffle_pairs(val, "image", 0)
    scenes = {json.loads(line)["id"]: json.loads(line) for line in (tmp_path / "val" / "scenes.jsonl").open()}
    for s in broken:
        objs = {(o["color"], o["shape"]) for o in scenes[Path(s.image).stem]["objects"]}
        asked = (s.meta["color"], s.meta["shape"])  # the question (and its meta) stayed with the sample
        assert synth_presence_truth(s) == ("yes" if asked in objs else "no")
    assert synth_presence_truth(Sample("x", "nowhere.png", "Is the circle red?", "yes")) is None
