"""The synthetic benchmark: deterministic, balanced, labels right (recomputed here), disjoint splits."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from superneurons.data import load_samples
from superneurons.errors import DataError
from superneurons.synth import ALL_FAMILIES, COLORS, SPLITS, generate_benchmark, make_scene

N_SCENES = 40


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate_benchmark(out, n_scenes=N_SCENES, seed=3)
    return out


def _scenes(bench: Path, split: str) -> dict[str, list[dict]]:
    lines = (bench / split / "scenes.jsonl").read_text().splitlines()
    return {d["id"]: d["objects"] for d in map(json.loads, lines)}


def _find(objs: list[dict], name: str) -> dict:
    color, shape = name.split()
    (obj,) = [o for o in objs if o["color"] == color and o["shape"] == shape]
    return obj


def _cx(o: dict) -> float:
    return (o["bbox"][0] + o["bbox"][2]) / 2


def expected_label(question: str, objs: list[dict]) -> str:
    """The answer, recomputed from the object list alone (independent of the question generator)."""
    q = question.lower()
    obj = r"(\w+ \w+)"
    if m := re.fullmatch(r"is there a (\w+) (\w+) in the image\?", q):
        hit = any(o["color"] == m[1] and o["shape"] == m[2] for o in objs)
    elif m := re.fullmatch(r"is the (\w+) (\w+)\?", q):
        (o,) = [o for o in objs if o["shape"] == m[1]]
        hit = o["color"] == m[2]
    elif m := re.fullmatch(rf"is the {obj} left of the {obj}\?", q):
        hit = _cx(_find(objs, m[1])) < _cx(_find(objs, m[2]))
    elif m := re.fullmatch(rf"is the {obj} obstructing the {obj}\?", q):
        hit = _find(objs, m[1])["order"] > _find(objs, m[2])["order"]
    elif m := re.fullmatch(rf"is the {obj} in front of the {obj}\?", q):
        hit = _find(objs, m[1])["bbox"][3] > _find(objs, m[2])["bbox"][3]
    elif m := re.fullmatch(r"(?:is there|are there) (\d) (\w+?)s? in the image\?", q):
        hit = sum(o["shape"] == m[2] for o in objs) == int(m[1])
    elif m := re.fullmatch(r"what color is the (\w+)\? is it (\w+)\? answer with yes or no\.", q):
        (o,) = [o for o in objs if o["shape"] == m[1]]
        hit = o["color"] == m[2]
    elif m := re.fullmatch(r"how many (\w+)s are there\? is it (\d)\? answer with yes or no\.", q):
        hit = sum(o["shape"] == m[1] for o in objs) == int(m[2])
    else:
        raise AssertionError(f"unexpected question {question!r}")
    return "yes" if hit else "no"


def test_scene_is_deterministic_by_seed() -> None:
    assert make_scene("val", 7, seed=1) == make_scene("val", 7, seed=1)
    assert make_scene("val", 7, seed=1).signature() != make_scene("val", 7, seed=2).signature()
    assert make_scene("val", 7, seed=1).render().tobytes() == make_scene("val", 7, seed=1).render().tobytes()


def test_benchmark_is_deterministic(bench: Path, tmp_path: Path) -> None:
    generate_benchmark(tmp_path, n_scenes=N_SCENES, seed=3)
    for split in SPLITS:
        for fam in ALL_FAMILIES:
            assert (bench / split / f"{fam}.jsonl").read_bytes() == (tmp_path / split / f"{fam}.jsonl").read_bytes()
        some = sorted((bench / split / "images").iterdir())[:3]
        for img in some:
            assert img.read_bytes() == (tmp_path / split / "images" / img.name).read_bytes()
    other = tmp_path / "other"
    generate_benchmark(other, n_scenes=N_SCENES, seed=4, families=["presence"])
    assert (other / "val" / "presence.jsonl").read_bytes() != (bench / "val" / "presence.jsonl").read_bytes()


def test_families_are_balanced(bench: Path) -> None:
    for split in SPLITS:
        for fam in ALL_FAMILIES:
            samples = load_samples(bench / split / f"{fam}.jsonl")
            labels = Counter(s.label for s in samples)
            if fam == "mcq":
                by_q = defaultdict(list)
                for s in samples:
                    by_q[s.meta["question_id"]].append(s.label)
                assert all(sorted(v) == ["no", "no", "no", "yes"] for v in by_q.values())
            else:
                assert abs(labels["yes"] - labels["no"]) <= 1, (split, fam, labels)
                assert len(samples) >= 10, (split, fam)


def test_labels_match_scene_description(bench: Path) -> None:
    checked = 0
    for split in SPLITS:
        scenes = _scenes(bench, split)
        for fam in ALL_FAMILIES:
            for s in load_samples(bench / split / f"{fam}.jsonl"):
                assert s.label == expected_label(s.question, scenes[s.meta["scene_id"]]), (s.id, s.question)
                assert Path(s.image).name == f"{s.meta['scene_id']}.png"
                checked += 1
    assert checked > 500


def test_presence_has_hard_negatives(bench: Path) -> None:
    scenes = _scenes(bench, "train")
    hard = 0
    for s in load_samples(bench / "train" / "presence.jsonl"):
        color, shape = re.fullmatch(r"Is there a (\w+) (\w+) in the image\?", s.question).groups()
        objs = scenes[s.meta["scene_id"]]
        if s.label == "no" and any(o["color"] == color for o in objs) and any(o["shape"] == shape for o in objs):
            hard += 1
    assert hard >= 3


def test_occlusion_pairs_overlap(bench: Path) -> None:
    scenes = _scenes(bench, "val")
    for s in load_samples(bench / "val" / "occlusion.jsonl"):
        a, b = re.fullmatch(r"Is the (\w+ \w+) obstructing the (\w+ \w+)\?", s.question).groups()
        ba, bb = _find(scenes[s.meta["scene_id"]], a)["bbox"], _find(scenes[s.meta["scene_id"]], b)["bbox"]
        assert ba[0] < bb[2] and bb[0] < ba[2] and ba[1] < bb[3] and bb[1] < ba[3]


def test_images_show_the_described_objects(bench: Path) -> None:
    """The centre pixel of every object not covered by a later one has the object's colour."""
    from PIL import Image

    for scene_id, objs in list(_scenes(bench, "probe").items())[:20]:
        img = Image.open(bench / "probe" / "images" / f"{scene_id}.png").convert("RGB")
        for o in objs:
            x0, y0, x1, y1 = o["bbox"]
            cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
            later = [p for p in objs if p["order"] > o["order"]
                     and p["bbox"][0] <= cx < p["bbox"][2] and p["bbox"][1] <= cy < p["bbox"][3]]
            if not later:
                assert img.getpixel((cx, cy)) == COLORS[o["color"]], (scene_id, o)


def test_splits_share_no_scene(bench: Path) -> None:
    ids, contents = [], []
    for split in SPLITS:
        for sid, objs in _scenes(bench, split).items():
            ids.append(sid)
            contents.append(json.dumps(objs, sort_keys=True).replace(f'"{split}', ""))
        assert len(_scenes(bench, split)) == N_SCENES
    assert len(set(ids)) == len(ids)
    assert len(set(contents)) == len(contents)


def test_unknown_family_names_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="presence"):
        generate_benchmark(tmp_path, n_scenes=2, families=["colour"])


def test_cli_synth_writes_files(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from superneurons.cli.app import _register_all, app

    _register_all()
    result = CliRunner().invoke(app, ["synth", "--out", str(tmp_path), "--scenes", "4", "--seed", "1",
                                      "--family", "presence", "--family", "counting"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "val" / "presence.jsonl").is_file()
    assert (tmp_path / "benchmark.json").is_file()
    assert not (tmp_path / "val" / "spatial.jsonl").exists()
