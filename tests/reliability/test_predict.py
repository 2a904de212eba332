"""`predict` / `evaluate` are as careful as `probe`: inputs checked before the model loads, `--skip-bad`,
predictions appended as they are made, a rerun resumes (byte-identical to an uninterrupted run), another
classifier is refused rather than mixed, one writer per file, and the same command under torchrun."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from superneurons.inference.predictions import run_record_path

from .conftest import _env
from .predict_fixtures import corrupt_pixels, make_classifier, records, with_image


@pytest.fixture(scope="module")
def env(tiny_llava, tiny_llava_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    return tiny_llava_dir, make_classifier(tiny_llava, root), make_classifier(tiny_llava, root, top_k=2)


def _args(env, data, out, *extra, clf=None):
    model, default, _ = env
    return ["predict", "-c", clf or default, "-m", model, "-d", data, "-o", out, "--device", "cpu",
            "--batch-size", "1", *extra]


def _clean(run_cli, env, make_dataset, tmp_path, n):
    """An uninterrupted run on an intact copy of the data: the reference bytes."""
    data = make_dataset(tmp_path / "clean", n)
    res = run_cli(*_args(env, data, tmp_path / "clean.jsonl"))
    assert res.returncode == 0, res.stderr
    return (tmp_path / "clean.jsonl").read_bytes()


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def test_a_missing_image_late_is_named_up_front_then_skip_bad_and_resume(env, make_dataset, tmp_path, run_cli,
                                                                        assert_named_error):
    clean = _clean(run_cli, env, make_dataset, tmp_path, 24)
    data = make_dataset(tmp_path / "d", 24)
    image = tmp_path / "d" / "images" / "data-0023.png"
    moved = image.rename(tmp_path / "kept.png")
    out = tmp_path / "p.jsonl"
    res = run_cli(*_args(env, data, out))
    assert_named_error(res, "s0023", "data-0023.png", "--skip-bad")
    assert "loading" not in res.stderr and not out.exists()  # refused before the model loaded

    res = run_cli(*_args(env, data, out, "--skip-bad"))
    assert res.returncode == 0, res.stderr
    assert "skipped s0023" in " ".join(res.stderr.split()) and "1 skipped" in res.stdout
    assert out.read_bytes() == b"".join(_lines(clean)[:23])
    assert json.loads(run_record_path(out).read_text())["skipped"][0][0] == "s0023"

    shutil.move(moved, image)  # the image is back: the same command predicts only it
    res = run_cli(*_args(env, data, out, "--skip-bad"))
    assert res.returncode == 0, res.stderr
    assert "resumed: 23 predictions" in " ".join(res.stdout.split())
    assert out.read_bytes() == clean


def test_a_late_decode_failure_keeps_the_rows_before_it_and_skip_bad_resumes(env, make_dataset, tmp_path, run_cli,
                                                                             assert_named_error):
    clean = _clean(run_cli, env, make_dataset, tmp_path, 24)
    data = make_dataset(tmp_path / "d", 24)
    corrupt_pixels(tmp_path / "d" / "images" / "data-0020.png")  # header and checksums intact
    out = tmp_path / "p.jsonl"
    res = run_cli(*_args(env, data, out))
    assert_named_error(res, "s0020", "data-0020.png", "--skip-bad")
    kept = out.read_bytes()
    assert kept == b"".join(_lines(clean)[:16])  # two whole chunks of 8 were written before the failure

    res = run_cli(*_args(env, data, out, "--skip-bad"))
    assert res.returncode == 0, res.stderr
    assert "resumed: 16 predictions" in " ".join(res.stdout.split())
    assert "skipped s0020" in " ".join(res.stderr.split())
    assert out.read_bytes() == b"".join(line for i, line in enumerate(_lines(clean)) if i != 20)


def test_a_kill_mid_run_then_rerun_is_byte_identical(env, make_dataset, tmp_path, run_cli):
    n = 48
    clean = _clean(run_cli, env, make_dataset, tmp_path, n)
    data = make_dataset(tmp_path / "d", n)
    out = tmp_path / "p.jsonl"
    cmd = [sys.executable, "-m", "superneurons", *map(str, _args(env, data, out))]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if out.is_file() and out.read_bytes().count(b"\n") >= 8:
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    written = out.read_bytes().count(b"\n")
    assert 8 <= written < n, f"{written} rows: the kill did not land mid-run"
    with out.open("ab") as fh:  # a kill in the middle of a write leaves half a line
        fh.write(b'{"id": "s00')
    res = run_cli(*_args(env, data, out))
    assert res.returncode == 0, res.stderr
    assert f"resumed: {written} predictions" in " ".join(res.stdout.split())
    assert out.read_bytes() == clean
    assert json.loads(run_record_path(out).read_text())["complete"]
    res = run_cli(*_args(env, data, out))  # complete: nothing to do, the model is not even loaded
    assert res.returncode == 0 and "loading" not in res.stderr and out.read_bytes() == clean


def test_another_classifier_or_file_is_refused_not_mixed(env, make_dataset, tmp_path, run_cli, assert_named_error):
    data = make_dataset(tmp_path / "d", 6)
    out = tmp_path / "p.jsonl"
    assert run_cli(*_args(env, data, out)).returncode == 0
    before = out.read_bytes()
    res = run_cli(*_args(env, data, out, clf=env[2]))
    assert_named_error(res, "p.jsonl", "another classifier")
    res = run_cli(*_args(env, data, out, "--aggregation", "vote"))
    assert_named_error(res, "p.jsonl", "another aggregation")
    assert out.read_bytes() == before
    foreign = tmp_path / "mine.jsonl"
    foreign.write_text("my own notes\n")
    assert_named_error(run_cli(*_args(env, data, foreign)), "mine.jsonl", "no run record")
    assert foreign.read_text() == "my own notes\n"


_HOLD = """
import sys, time
from superneurons.utils.locking import output_lock
with output_lock(sys.argv[1], folder=False):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_writer_of_the_same_file_is_refused(env, make_dataset, tmp_path, run_cli, assert_named_error):
    data = make_dataset(tmp_path / "d", 4)
    out = tmp_path / "p.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert_named_error(run_cli(*_args(env, data, out)), "p.jsonl", f"in use by pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()


def test_evaluate_checks_images_first_and_skips_bad_ones(env, make_dataset, tmp_path, run_cli, assert_named_error):
    model, clf, _ = env
    data = with_image(make_dataset(tmp_path / "d", 8), 5, "images/gone.png")
    args = ["evaluate", "-c", clf, "-m", model, "-d", data, "--device", "cpu", "--no-generate", "--batch-size", "2"]
    res = run_cli(*args)
    assert_named_error(res, "s0005", "gone.png", "--skip-bad")
    assert "loading" not in res.stderr
    res = run_cli(*args, "--skip-bad", "--out", tmp_path / "m.json")
    assert res.returncode == 0, res.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n"] == 7 and [s["id"] for s in metrics["skipped"]] == ["s0005"]


def _torchrun(*args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in _env().items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "superneurons", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_torchrun_predict_equals_one_process(env, make_dataset, tmp_path, run_cli):
    clean = _clean(run_cli, env, make_dataset, tmp_path, 9)  # odd: the ranks get 5 and 4 samples
    data = make_dataset(tmp_path / "d", 9)
    out = tmp_path / "p.jsonl"
    res = _torchrun(*_args(env, data, out))
    assert res.returncode == 0, res.stderr[-3000:]
    assert out.read_bytes() == clean
    assert res.stdout.count("wrote") == 1  # rank 0 speaks for the job
    assert sorted(p.name for p in tmp_path.glob("p.jsonl*")) == ["p.jsonl", "p.jsonl.run.json"]  # parts merged
    res = _torchrun(*_args(env, data, out))  # the same job again: already complete
    assert res.returncode == 0, res.stderr[-3000:]
    assert out.read_bytes() == clean
    assert records(out)[0]["id"] == "s0000"
