"""`superneurons experiment` end to end on a tiny LLaVA folder, and the demo-model experiment run on
small synthetic-like families (every experiment, one cache)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from conftest import write_dataset
from superneurons.cli.app import _register_all, app
from superneurons.data import load_samples
from superneurons.errors import DataError


@pytest.fixture(scope="module")
def cli():
    _register_all()
    return CliRunner()


@pytest.fixture
def files(tmp_path):
    return (write_dataset(tmp_path, 12, name="probe.jsonl", seed=1), write_dataset(tmp_path, 8, name="val.jsonl", seed=2))


def test_cli_savs(cli, tiny_llava_dir, files, tmp_path):
    probe, val = files
    out = tmp_path / "exp"
    res = cli.invoke(app, ["experiment", "savs", "--model", str(tiny_llava_dir), "--probe", str(probe), "--val",
                           str(val), "--out", str(out), "--n", "8", "--k", "2", "--max-new-tokens", "2",
                           "--device", "cpu", "--model-dtype", "float32"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    text = " ".join(res.output.split())
    assert "SAVs" in text and "SNs (mean)" in text and "Tab. 3" in text
    data = json.loads((out / "savs.json").read_text())
    assert [r["method"] for r in data["rows"]] == ["model", "SAVs", "SNs (mean)", "SNs (vote)"]
    assert (out / "savs.md").is_file() and any((out / "cache").glob("acts-first-*"))

    # transfer reuses the cache of the same --out (activations and answers of these files)
    res = cli.invoke(app, ["experiment", "transfer", "--model", str(tiny_llava_dir), "--probe", str(probe), "--val",
                           str(val), "--target-probe", str(val), "--out", str(out), "--max-new-tokens", "2",
                           "--device", "cpu", "--model-dtype", "float32", "--name", "src"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    rows = json.loads((out / "transfer.json").read_text())["rows"]
    assert [(r["method"], r["probe"], r["val"]) for r in rows][:4] == [
        ("model", None, "val"), ("SNs (mean)", "val", "val"), ("SNs (vote)", "val", "val"), ("SNs (mean)", "src", "val")]

    # overlap from the stores the run cached, with the model's scores given
    stores = sorted((out / "cache").glob("acts-first-*"))
    args = ["experiment", "overlap", "--out", str(tmp_path / "ov")]
    for i, s in enumerate(stores[:2]):
        args += ["--store", f"d{i}={s}", "--model-score", f"d{i}=0.5"]
    res = cli.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert (tmp_path / "ov" / "overlap.png").is_file() and "d0 & d1" in res.output


def test_cli_errors(cli, files):
    probe, val = files
    res = cli.invoke(app, ["experiment", "sav", "--model", "x", "--probe", str(probe), "--val", str(val)])
    assert isinstance(res.exception, DataError) and "valid names: savs, nshot" in str(res.exception)
    res = cli.invoke(app, ["experiment", "savs", "--probe", str(probe), "--val", str(val)])
    assert isinstance(res.exception, DataError) and "--model" in str(res.exception)


@pytest.mark.slow
def test_demo_experiments_on_small_families(tiny_llava_dir, tmp_path):
    from superneurons.experiments import run_demo_experiments
    from superneurons.experiments._common import ExperimentOptions
    from superneurons.models import load_model

    vlm = load_model(str(tiny_llava_dir), dtype="float32", device="cpu")
    vlm.model.generation_config.suppress_tokens = [vlm.model.config.image_token_id]  # see experiment_fixtures
    probe = load_samples(write_dataset(tmp_path, 10, name="probe.jsonl", seed=1))
    val = load_samples(write_dataset(tmp_path, 6, name="val.jsonl", seed=2))
    questions = {"presence": "Is there a {c} cube in the image ?",
                 "spatial": "Is the {c} cube left of the blue sphere ?",
                 "occlusion": "Is the {c} cube obstructing the blue sphere ?"}
    colors = ["red", "green", "yellow", "black", "white"]

    def ask(samples, q, prefix=""):
        return [replace(s, id=prefix + s.id, question=q.format(c=colors[i % 5])) for i, s in enumerate(samples)]

    fams = {f: (ask(probe, q), ask(val, q, "v")) for f, q in questions.items()}
    out = tmp_path / "demo"
    results = run_demo_experiments(vlm, fams, out, quick=True, options=ExperimentOptions(max_new_tokens=2))
    assert list(results) == ["savs", "nshot", "shuffled", "prompts", "transfer", "metric", "token", "overlap",
                             "probe-size"]
    index = json.loads((out / "index.json").read_text())
    assert index["skipped"] == {} and index["quick"] is True
    for name, res in results.items():
        assert res.rows and (out / f"{name}.json").is_file() and (out / f"{name}.md").is_file()
    assert results["probe-size"].figures[0].name == "probe-size.png"
    assert [d for d in results["overlap"].meta["model_scores"]] == ["presence", "spatial", "occlusion"]
    assert {r["word"] for r in results["prompts"].rows} == {"obstructing", "hiding", "occluding", "random"}
    # without the occlusion family the prompt and metric experiments are skipped, not failed
    results = run_demo_experiments(vlm, {k: fams[k] for k in ("presence", "spatial")}, out, quick=True,
                                   options=ExperimentOptions(max_new_tokens=2), only=["prompts", "transfer"])
    assert list(results) == ["transfer"]
    assert "occlusion" in json.loads((out / "index.json").read_text())["skipped"]["prompts"]
