"""The study file: defaults, paths relative to the file, prepare tables, and errors that name the key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from superneurons.errors import ConfigError
from superneurons.study import load_study, parse_study, study_toml
from superneurons.study.steps import StepCache, step_key

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _files(tmp: Path) -> dict:
    for name in ("p.jsonl", "v.jsonl"):
        (tmp / name).write_text("", encoding="utf-8")
    return {"name": "a", "probe": "p.jsonl", "val": "v.jsonl"}


def test_defaults_paths_and_prepare_tables(tmp_path):
    (tmp_path / "data" / "sqa").mkdir(parents=True)
    raw = {"model": "m/id", "datasets": [_files(tmp_path), {"name": "sqa", "prepare": {
        "dataset": "scienceqa", "root": "data/sqa", "n": 30, "balanced": True, "val_n": 8}}],
        "options": {"early_max_layer": 3}}
    spec = parse_study(raw, tmp_path)
    o = spec.options
    assert o.metric == "accuracy" and o.token == "first" and o.early_max_layer == [3] and o.generate
    assert list(o.experiments) == ["overlap", "probe-size"] and o.bench and o.batch_size == 8
    a, sqa = spec.datasets
    assert a.probe.file == (tmp_path / "p.jsonl").resolve() and a.val.prepare is None
    root = str((tmp_path / "data" / "sqa").resolve())
    assert sqa.probe.prepare == {"dataset": "scienceqa", "root": root, "n": 30, "balanced": True, "split": "train"}
    assert sqa.val.prepare == {"dataset": "scienceqa", "root": root, "n": 8, "split": "val"}


def test_written_study_files_read_back(tmp_path):
    text = study_toml("m/id", [_files(tmp_path)], {"early_max_layer": [4, 2], "experiments": {
        "prompts": {"datasets": ["a"], "word": "obstructing", "alternatives": ["hiding"]}}}, title="T",
        comment="two\nlines")
    (tmp_path / "s.toml").write_text(text, encoding="utf-8")
    spec = load_study(tmp_path / "s.toml")
    assert spec.title == "T" and spec.options.early_max_layer == [2, 4]
    assert spec.options.experiments == {"prompts": {"datasets": ["a"], "word": "obstructing",
                                                    "alternatives": ["hiding"]}}


@pytest.mark.parametrize(("change", "message"), [
    ({"colour": 1}, r"unknown key\(s\) colour; valid keys: datasets, model, options, title"),
    ({"options": {"metric": "auc"}}, r"metric = 'auc': use one of accuracy, precision, recall, f1"),
    ({"options": {"batch_size": "8"}}, r"batch_size = '8': expected int"),
    ({"options": {"early_max_layer": [2, -1]}}, r"early_max_layer = \[2, -1\]: write an integer >= 0"),
    ({"options": {"experiments": ["savs", "shapley"]}}, r"unknown experiment 'shapley'; valid names: savs"),
    ({"options": {"bench_dataset": "b"}}, r"bench_dataset = 'b' is not one of a"),
    ({"options": {"cascade_margins": [0.7]}}, r"cascade_margins = \[0.7\]: write a list of numbers in \[0, 0.5\]"),
    ({"options": {"experiments": {"savs": {"datasets": ["zz"]}}}}, r"experiments.savs\]: unknown dataset\(s\) zz"),
    ({"datasets": []}, r"no \[\[datasets\]\]"),
    ({"model": ""}, r"missing model"),
])
def test_bad_values_name_the_key(tmp_path, change, message):
    raw = {"model": "m/id", "datasets": [_files(tmp_path)], **change}
    with pytest.raises(ConfigError, match=message):
        parse_study(raw, tmp_path, "study.toml")


def test_bad_datasets_name_the_table(tmp_path):
    ok = _files(tmp_path)
    cases = [
        ([ok, ok], r"dataset name\(s\) a appear twice"),
        ([{**ok, "probe": "missing.jsonl"}], r"#1.probe: file 'missing.jsonl' not found"),
        ([{"name": "a", "probe": "p.jsonl"}], r"dataset 'a' has no val set: add val = "),
        ([{**ok, "extra": 1}], r"#1: unknown key\(s\) extra"),
        ([{"name": "a", "prepare": {"dataset": "nope", "root": "."}}], r"unknown dataset 'nope'; valid names"),
        ([{"name": "a", "prepare": {"dataset": "clevr", "root": "nowhere"}}], r"root 'nowhere' is not a folder"),
        ([{"name": "a", "prepare": {"dataset": "clevr", "root": ".", "n": 0}}], r"n = 0: use a positive integer"),
        ([{**ok, "val": {"dataset": "clevr", "root": "."}}], r"#1.val: missing key 'split'"),
        ([{**ok, "val": {"dataset": "vizwiz", "root": ".", "split": "val", "variant": "random"}}],
         r"#1.val: variant do\(es\) not apply to vizwiz; drop it"),
        ([{**ok, "val": {"dataset": "pope", "root": ".", "split": "train"}}], r"split \['train'\]: pope has splits val"),
    ]
    for datasets, message in cases:
        with pytest.raises(ConfigError, match=message):
            parse_study({"model": "m/id", "datasets": datasets}, tmp_path, "study.toml")
    (tmp_path / "bad.toml").write_text("model = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_study(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="not found"):
        load_study(tmp_path / "none.toml")


@pytest.mark.parametrize("name", ["llava-1.5-7b.toml", "qwen3-vl-4b.toml"])
def test_the_example_study_files_parse(tmp_path, name):
    shutil.copy(EXAMPLES / name, tmp_path / name)
    for root in ("coco", "pope", "instaorder", "vizwiz", "CLEVR_v1.0", "aokvqa", "scienceqa"):
        (tmp_path / "data" / root).mkdir(parents=True)
    spec = load_study(tmp_path / name)
    assert [d.name for d in spec.datasets] == ["pope", "instaorder-occlusion", "instaorder-depth", "vizwiz", "clevr",
                                               "aokvqa", "scienceqa"]
    assert spec.options.early_max_layer == [2, 4] and spec.options.bench_dataset == "pope"
    assert spec.datasets[0].probe.prepare["dataset"] == "coco-pope" and spec.datasets[0].val.prepare["split"] == "val"


def test_step_cache_runs_once_per_key_and_keeps_a_journal(tmp_path):
    cache = StepCache(tmp_path)
    calls = []
    key = step_key("probe", [1, 2], "first")
    assert cache.run("a/probe", key, lambda: calls.append(1) or {"n": 2}) == {"n": 2}
    assert StepCache(tmp_path).run("a/probe", key, lambda: calls.append(1) or {"n": 3}) == {"n": 2}
    assert cache.run("a/probe", step_key("probe", [1, 2], "last"), lambda: calls.append(1) or {"n": 4}) == {"n": 4}
    assert len(calls) == 2
    lines = (tmp_path / "journal.jsonl").read_text(encoding="utf-8").splitlines()
    assert [('"cached": true' in ln) for ln in lines] == [False, True, False]


def test_dataset_samples_prepare_once_and_limit(tmp_path, monkeypatch):
    import json

    import superneurons.data.registry as registry
    from superneurons.errors import DataError
    from superneurons.study.data import dataset_samples

    root = tmp_path / "CLEVR_v1.0"
    for split in ("train", "val"):
        qs = [{"image_filename": f"CLEVR_{split}_{i:06d}.png", "question": f"Any cube {i}?",
               "answer": "yes" if i % 2 else "no", "question_index": i} for i in range(6)]
        (root / "questions").mkdir(parents=True, exist_ok=True)
        (root / "questions" / f"CLEVR_{split}_questions.json").write_text(json.dumps({"questions": qs}))
        (root / "images" / split).mkdir(parents=True)
        for q in qs:
            (root / "images" / split / q["image_filename"]).write_bytes(b"")
    spec = parse_study({"model": "m", "datasets": [{"name": "c", "prepare": {"dataset": "clevr", "root": "CLEVR_v1.0",
                                                                              "n": 4, "balanced": True}}]}, tmp_path)
    calls = []
    real = registry.prepare_dataset
    monkeypatch.setattr(registry, "prepare_dataset", lambda *a, **k: calls.append(a) or real(*a, **k))
    probe, val = dataset_samples(spec.datasets[0], tmp_path / "out")
    assert len(probe) == 4 and len(val) == 6 and len(calls) == 2
    assert (tmp_path / "out" / "data" / "c" / "probe.jsonl").is_file()
    probe, val = dataset_samples(spec.datasets[0], tmp_path / "out", limit=2)
    assert len(calls) == 2 and len(probe) == 2 and len(val) == 2  # prepared files reused
    with pytest.raises(DataError, match="lacks yes or no"):
        dataset_samples(parse_study({"model": "m", "datasets": [{"name": "c", "prepare": {
                "dataset": "clevr", "root": "CLEVR_v1.0", "val_n": 1}}]}, tmp_path).datasets[0], tmp_path / "o2")


def test_a_local_models_training_record_is_kept(tmp_path):
    from superneurons.report.disclosure import training_disclosure
    from superneurons.study.run import TRAINING_FILE, _training

    assert _training(str(tmp_path)) is None and _training("org/hub-id") is None
    (tmp_path / TRAINING_FILE).write_text('{"disclosure": "Trained on the train split.", "steps": 10}')
    record = _training(str(tmp_path))
    assert record == {"disclosure": "Trained on the train split.", "steps": 10}
    assert training_disclosure(record) == "Trained on the train split." and training_disclosure(None) is None
