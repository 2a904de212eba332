"""`superneurons probe` end to end: a tiny LLaVA folder + a JSONL -> a store that loads back."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from superneurons.activations.store import load_activations
from superneurons.cli.app import _register_all, app
from superneurons.constants import MANIFEST_NAME
from superneurons.errors import StoreError


@pytest.fixture(scope="module")
def cli():
    _register_all()
    return CliRunner()


def test_probe_command_in_a_fresh_process(tiny_llava_dir, make_dataset, tmp_path):
    data = make_dataset(tmp_path, 6)
    out = tmp_path / "acts"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2")
    cmd = [sys.executable, "-c", "from superneurons.cli.app import main; main()", "probe",
           "--model", str(tiny_llava_dir), "--data", str(data), "--out", str(out), "--shard-size", "4"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "6 samples x 4 layers x 64" in " ".join(res.stdout.split())
    assert "probe" in res.stderr  # the progress bar
    acts, labels, manifest = load_activations(out)
    assert acts.shape == (6, 4, 64) and acts.dtype == torch.float16
    assert labels.tolist() == [1, 0, 1, 0, 1, 0] and manifest["complete"]
    assert len(manifest["shards"]) == 2


def test_probe_options(cli, tiny_llava_dir, make_dataset, tmp_path):
    data = make_dataset(tmp_path, 10)
    out = tmp_path / "acts"
    args = ["probe", "--model", str(tiny_llava_dir), "--data", str(data), "--out", str(out),
            "--layers", "0-1,3", "--balanced", "8", "--seed", "1", "--limit", "6", "--dtype", "float32",
            "--batch-size", "4", "--device", "cpu"]
    res = cli.invoke(app, args)
    assert res.exit_code == 0, res.output
    m = json.loads((out / MANIFEST_NAME).read_text())
    assert m["layers"] == [0, 1, 3] and m["num_samples"] == 6 and m["dtype"] == "float32"
    res = cli.invoke(app, args)  # same arguments again: resumes a complete store, nothing to do
    assert res.exit_code == 0, res.output


def test_probe_errors_are_clear(tiny_llava_dir, make_dataset, tmp_path, monkeypatch, capsys):
    from superneurons.cli.app import main

    data = make_dataset(tmp_path, 4, labels=["yes"] * 4)
    monkeypatch.setattr(sys, "argv", ["superneurons", "probe", "--model", str(tiny_llava_dir),
                                      "--data", str(data), "--out", str(tmp_path / "a")])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = " ".join(capsys.readouterr().err.split())
    assert exit_.value.code == 2 and "both yes and no" in err and "Traceback" not in err


def test_probe_bad_layer_spec(cli, tiny_llava_dir, dataset, tmp_path):
    res = cli.invoke(app, ["probe", "--model", str(tiny_llava_dir), "--data", str(dataset),
                           "--out", str(tmp_path / "b"), "--layers", "0-x"])
    assert isinstance(res.exception, StoreError) and "0-x" in str(res.exception)
