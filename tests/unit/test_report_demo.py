"""Pieces of the demo pipeline that need no model: scene counts and the probing / validation draw."""

from __future__ import annotations

import pytest

from superneurons.data import Sample
from superneurons.errors import DataError
from superneurons.synth.demo import pick_samples, run_demo, scenes_needed


def _samples(labels: list[str], prefix: str = "s", meta: bool = False) -> list[Sample]:
    return [Sample(f"{prefix}{i}", "x.png", "q?", lab, {"question_id": f"q{i // 4}"} if meta else {})
            for i, lab in enumerate(labels)]


def test_scenes_needed_covers_the_rarest_family():
    assert scenes_needed(100, ["presence"]) == 110
    assert scenes_needed(100, ["presence", "occlusion"]) == 233  # occlusion: ~0.45 questions per scene


def test_pick_samples_balances_probe_and_keeps_whole_mcq_questions():
    probe_all = _samples(["yes", "no", "no", "no"] * 10)
    val_all = _samples(["yes", "no", "no", "no"] * 10, prefix="v", meta=True)
    probe, val = pick_samples(probe_all, val_all, "mcq", n_probe=10, n_val=10, seed=0)
    assert len(probe) == 10 and sum(s.label == "yes" for s in probe) == 5
    assert len(val) == 8 and [s.id for s in val] == [f"v{i}" for i in range(8)]  # 2 whole questions
    _, val = pick_samples(probe_all, _samples(["yes", "no"] * 10, prefix="v"), "presence", 10, 7, seed=0)
    assert len(val) == 7
    with pytest.raises(DataError, match="lacks yes or no"):
        pick_samples(probe_all, _samples(["no"] * 8), "presence", 10, 4, seed=0)


def test_run_demo_checks_options(tmp_path):
    with pytest.raises(DataError, match="experiments='some'"):
        run_demo(tmp_path, experiments="some")
    with pytest.raises(DataError, match="at least 4"):
        run_demo(tmp_path, n_probe=2)
    with pytest.raises(DataError, match="unknown question family"):
        run_demo(tmp_path, families=["colour"])


def test_the_demo_writes_its_experiments_as_study_tables():
    from superneurons.study.spec import _experiments
    from superneurons.synth import ALL_FAMILIES
    from superneurons.synth.demo import demo_experiments

    tables, left_out = demo_experiments("all", False, ALL_FAMILIES)
    assert list(tables) == ["savs", "nshot", "shuffled", "prompts", "transfer", "metric", "token", "overlap",
                            "probe-size"] and not left_out
    assert tables["shuffled"] == {"datasets": ["presence"], "relabel": "synth-presence"}
    assert tables["prompts"]["alternatives"] == ["hiding", "occluding"] and "datasets" not in tables["savs"]
    assert _experiments(tables, "study") == tables  # a valid [options.experiments] value
    core, left_out = demo_experiments("core", True, ["presence", "depth"])
    assert list(core) == ["overlap", "probe-size"] and core["probe-size"]["sizes"] == [10, 40, 100, 3000]
    some, left_out = demo_experiments("all", True, ["depth", "spatial"])
    assert "shuffled" not in some and any(line.startswith("shuffled: needs family presence") for line in left_out)
    assert demo_experiments("none", True, ["presence"]) == ({}, [])
