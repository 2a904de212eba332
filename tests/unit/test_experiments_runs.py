"""experiments transfer, metric, token, overlap, probe-size: end to end on the tiny model, plus the
size schedule and the overlap counting on planted scores."""

from __future__ import annotations

import json

import pytest
import torch
from experiment_fixtures import load_exp_vlm, probe_val

from superneurons.errors import DataError
from superneurons.experiments import overlap_from_scores, run_experiment
from superneurons.experiments._common import ExperimentOptions
from superneurons.experiments.probe_size import probe_sizes

OPTS = ExperimentOptions(max_new_tokens=2)


@pytest.fixture(scope="module")
def vlm(tiny_llava_dir):
    return load_exp_vlm(tiny_llava_dir)


@pytest.fixture
def data(tmp_path):
    return probe_val(tmp_path, 12, 8)


def test_transfer(vlm, data, tmp_path):
    probe, val = data
    res = run_experiment("transfer", vlm, datasets={"src": (probe, None), "tgt": (val[:6], val)}, options=OPTS)
    got = [(r["method"], r["probe"], r["val"]) for r in res.rows]
    assert got == [("model", None, "tgt"), ("SNs (mean)", "tgt", "tgt"), ("SNs (vote)", "tgt", "tgt"),
                   ("SNs (mean)", "src", "tgt"), ("SNs (vote)", "src", "tgt")]


def test_metric(vlm, data):
    probe, val = data
    res = run_experiment("metric", vlm, probe=probe, val=val, metrics=("accuracy", "recall"), options=OPTS)
    assert [(r["optimised"], r["method"]) for r in res.rows][1:] == [
        ("accuracy", "SNs (mean)"), ("accuracy", "SNs (vote)"), ("recall", "SNs (mean)"), ("recall", "SNs (vote)")]
    assert all(r["exit_layer"] is not None for r in res.rows[1:])
    with pytest.raises(DataError, match="not valid"):
        run_experiment("metric", vlm, probe=probe, val=val, metrics=("auc",), options=OPTS)


def test_token(vlm, data):
    probe, val = data
    res = run_experiment("token", vlm, probe=probe, val=val, options=OPTS)
    rows = {(r["token"], r["method"]): r for r in res.rows}
    assert set(rows) == {(None, "model"), ("first", "SNs (mean)"), ("first", "SNs (vote)"),
                         ("last", "SNs (mean)"), ("last", "SNs (vote)")}
    for key, r in rows.items():
        assert r["seconds_per_sample"] > 0
        if key[0]:
            assert 0 <= r["exit_layer"] < vlm.num_layers and r["early_exit"] == (key[0] == "first")
    assert rows[("first", "SNs (mean)")]["accuracy"] > 0.9


def test_overlap_counts_planted_neurons(tmp_path):
    a = torch.full((3, 5), 0.5, dtype=torch.float64)
    b = torch.full((3, 5), 0.5, dtype=torch.float64)
    a[0, 1] = b[0, 1] = 0.9  # beats both
    a[2, 4] = 0.9  # beats a only
    b[1, 0] = 0.8  # beats b only
    res = overlap_from_scores({"a": a, "b": b}, {"a": 0.6, "b": 0.7}, layers=[4, 5, 6], out_dir=tmp_path)
    counts = {r["datasets"]: r["count"] for r in res.rows}
    assert counts == {"a": 2, "b": 2, "a & b": 1}
    assert res.rows[-1]["layers"] == "4:1" and res.meta["on_all"] == [{"layer": 4, "neuron": 1, "a": 0.9, "b": 0.9}]
    assert (tmp_path / "overlap.png").stat().st_size > 1000
    with pytest.raises(DataError, match="no model score"):
        overlap_from_scores({"a": a, "b": b}, {"a": 0.6})


def test_overlap_end_to_end(vlm, data, tmp_path):
    probe, val = data
    res = run_experiment("overlap", vlm, datasets={"p": (probe, None), "v": (val, None)}, out_dir=tmp_path,
                         options=OPTS)
    assert [r["datasets"] for r in res.rows] == ["p", "v", "p & v"]
    assert set(res.meta["model_scores"]) == {"p", "v"} and res.figures[0].is_file()


def test_probe_sizes():
    assert probe_sizes((10, 40, 100, 300, 1000, 3000), 942) == [10, 40, 100, 300, 942]
    assert probe_sizes((10, 40), 3000) == [10, 40]
    assert probe_sizes((10, 3000), 3000) == [10, 3000]
    with pytest.raises(DataError):
        probe_sizes((1,), 100)


def test_probe_size_end_to_end(vlm, data, tmp_path):
    probe, val = data
    res = run_experiment("probe-size", vlm, probe=probe, val=val, out_dir=tmp_path, sizes=(4, 8, 3000), repeats=2,
                         options=OPTS)
    got = [(r["N"], r["method"]) for r in res.rows]
    assert got == [(None, "model"), (4, "SNs (mean)"), (4, "SNs (vote)"), (8, "SNs (mean)"), (8, "SNs (vote)"),
                   (12, "SNs (mean)"), (12, "SNs (vote)")]
    assert all(r["repeats"] == 2 and "f1_std" in r for r in res.rows[1:])
    assert (tmp_path / "probe-size.png").stat().st_size > 1000
    assert json.loads((tmp_path / "probe-size.json").read_text())["figures"] == ["probe-size.png"]


def test_overlap_rows_for_many_datasets():
    g = torch.Generator().manual_seed(0)
    scores = {f"d{i}": torch.rand(4, 16, generator=g, dtype=torch.float64) for i in range(6)}
    res = overlap_from_scores(scores, dict.fromkeys(scores, 0.3))
    sizes = [r["n_datasets"] for r in res.rows]
    assert sizes.count(1) == 6 and sizes.count(2) == 15 and sizes.count(6) == 1
    assert all(0 < sizes.count(k) <= 10 for k in (3, 4, 5))
    for k in (3, 4, 5):  # the most shared combinations, best first
        counts = [r["count"] for r in res.rows if r["n_datasets"] == k]
        assert counts == sorted(counts, reverse=True) and min(counts) > 0
    every = torch.stack([s > 0.3 for s in scores.values()]).all(0)
    assert res.rows[-1]["count"] == int(every.sum()) and len(res.meta["on_all"]) == int(every.sum())
