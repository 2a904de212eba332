"""experiments/_common.py + registry.py: results on disk, the cache, store views, the registry."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from experiment_fixtures import load_exp_vlm, probe_val

from superneurons.data import Sample
from superneurons.errors import DataError, SuperNeuronsError
from superneurons.experiments import EXPERIMENTS, get_experiment, run_experiment
from superneurons.experiments._common import Dataset, ExperimentOptions, ExperimentResult, require_matplotlib
from superneurons.experiments.workspace import StoreView, Workspace


@pytest.fixture(scope="module")
def vlm(tiny_llava_dir):
    return load_exp_vlm(tiny_llava_dir)


def test_unknown_experiment_lists_the_valid_names():
    with pytest.raises(DataError) as err:
        get_experiment("sav")
    for name in ("savs", "nshot", "prompts", "shuffled", "transfer", "metric", "token", "overlap", "probe-size"):
        assert name in str(err.value)
    assert set(EXPERIMENTS) == {"savs", "nshot", "prompts", "shuffled", "transfer", "metric", "token", "overlap",
                                "probe-size"}
    for exp in EXPERIMENTS.values():
        assert callable(exp.load())


def test_result_writes_json_and_markdown(tmp_path):
    res = ExperimentResult("x", "A table", "Tab. 0", ["method", "N", "accuracy", "k"],
                           [{"method": "SNs", "N": 40, "accuracy": 0.6021, "k": None}], meta={"notes": ["hi"]})
    paths = res.write(tmp_path)
    assert [p.name for p in paths] == ["x.json", "x.md"]
    data = json.loads(paths[0].read_text())
    assert data["rows"][0]["accuracy"] == 0.6021 and data["paper"] == "Tab. 0"
    md = paths[1].read_text()
    assert "| method | N | Acc. | k |" in md and "| SNs | 40 | 60.2 | - |" in md and "- hi" in md


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SuperNeuronsError, match=r"pip install superneurons\[report\]"):
        require_matplotlib("probe-size")


def test_dataset_checks():
    with pytest.raises(DataError, match="empty"):
        Dataset("d", probe=[])
    with pytest.raises(DataError, match="needs a val set"):
        Dataset("d").need("val", "savs")
    with pytest.raises(DataError, match="exactly 2"):
        one = [Sample("a", "x.png", "q", "yes")]
        run_experiment("transfer", None, probe=one, val=one)  # checked before the model is touched


def test_workspace_caches_stores_and_answers(vlm, tmp_path, monkeypatch):
    probe, _ = probe_val(tmp_path, 6, 2)
    ws = Workspace(vlm, ExperimentOptions(max_new_tokens=2), tmp_path / "cache")
    a = ws.store(probe)
    assert ws.store(probe).directory == a.directory and a.num_samples == 6
    assert ws.store(probe[:4]).directory != a.directory
    calls = []
    import superneurons.experiments.workspace as bl

    real = bl.generate_answers
    monkeypatch.setattr(bl, "generate_answers", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = ws.model_answers(probe)
    again = Workspace(vlm, ExperimentOptions(max_new_tokens=2), tmp_path / "cache").model_answers(probe)
    assert calls == [1] and again.preds == first.preds and len(first.texts) == 6
    tmp = Workspace(vlm)
    assert tmp.cache_dir.is_dir()
    tmp.close()
    assert not tmp.cache_dir.exists()


def test_store_view_is_a_row_subset(vlm, tmp_path):
    probe, _ = probe_val(tmp_path, 8, 2)
    ws = Workspace(vlm, ExperimentOptions(), tmp_path / "cache")
    store = ws.store(probe)
    view = StoreView(store, [5, 1, 2, 6])
    full = store.read()
    torch.testing.assert_close(view.read(), full[[5, 1, 2, 6]])
    assert view.labels.tolist() == store.labels[[5, 1, 2, 6]].tolist() and view.num_samples == 4
    chunks = list(view.iter_layer_chunks(3))
    assert [c[0] for c in chunks] == [[0, 1, 2], [3]] and chunks[0][1].shape == (4, 3, 64)
    fit = ws.fit(view)
    assert fit.classifier.sns.k >= 1 and fit.classifier.meta["probe_samples"] == 4
