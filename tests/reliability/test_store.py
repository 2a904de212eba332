"""Stores and saved files against the CLI, as a user meets them: changed inputs, damaged or swapped shards,
two writers on one folder, damaged classifier files. Each case asserts the exit code, that the message
names the file or record and the fix, that no traceback is printed, and that earlier outputs are
byte-identical (issue 16, "Why" (a)-(d) and the saved-file tracebacks)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from superneurons.activations.identity import CHECKED_NAME
from superneurons.activations.store import ActivationStore
from superneurons.constants import MANIFEST_NAME, SHARD_PATTERN
from superneurons.inference.classifier import CLASSIFIER_CONFIG, CLASSIFIER_WEIGHTS
from superneurons.utils.locking import LOCK_NAME

pytestmark = pytest.mark.slow
_TESTS = Path(__file__).resolve().parents[1]


def _helpers(path: Path, name: str):
    """A conftest's module by path (two conftests share the module name `conftest`)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (the lock files aside) by relative name, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith((LOCK_NAME, CHECKED_NAME))}


def _probe_args(model: Path, w: Path, out: str = "acts") -> list[str | Path]:
    return ["probe", "--model", model, "--data", w / "data.jsonl", "--out", w / out, "--shard-size", "2",
            "--dtype", "float32", "--device", "cpu"]


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_llava_dir):
    """A data file, its store (shards of 2 samples) and a classifier selected on it, all made by the CLI."""
    run_cli = _helpers(_TESTS / "reliability" / "conftest.py", "_reliability_helpers").run_cli
    root = tmp_path_factory.mktemp("reliability-store")
    _helpers(_TESTS / "conftest.py", "_test_helpers").write_dataset(root, 8)
    res = run_cli(*_probe_args(tiny_llava_dir, root))
    assert res.returncode == 0, res.stderr
    res = run_cli("select", "--acts", root / "acts", "--out", root / "clf", "--top-k", "4")
    assert res.returncode == 0, res.stderr
    return root


@pytest.fixture
def w(base, tmp_path):
    """A private copy of `base`."""
    shutil.copytree(base, tmp_path / "w")
    return tmp_path / "w"


def _flip(path: Path, n: int = 16) -> None:
    data = bytearray(path.read_bytes())
    data[-n:] = bytes(b ^ 0xFF for b in data[-n:])  # the last bytes of the activations tensor
    path.write_bytes(bytes(data))


def _select_refused(w: Path, run_cli, assert_named_error, *names: str) -> dict[str, bytes]:
    """`select` on the damaged store fails naming `names`, and the earlier classifier is left as it was."""
    earlier = _files(w / "clf")
    assert_named_error(run_cli("select", "--acts", w / "acts", "--out", w / "clf", "--top-k", "4"), *names)
    assert _files(w / "clf") == earlier
    return earlier


def test_a_changed_question_or_image_is_recomputed_not_kept(w, tiny_llava_dir, run_cli, assert_named_error):
    from PIL import Image

    records = [json.loads(line) for line in (w / "data.jsonl").read_text().splitlines()]
    records[1]["question"] = "Is there a zebra in the image ? Answer with yes or no ."
    (w / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    Image.new("RGB", (24, 24), (0, 200, 0)).save(w / records[4]["image"])  # same file name, other pixels
    before = _files(w / "acts")
    res = run_cli(*_probe_args(tiny_llava_dir, w), "--refuse-changed")
    assert_named_error(res, "'s0001', 's0004'", "--refuse-changed")
    assert _files(w / "acts") == before
    res = run_cli(*_probe_args(tiny_llava_dir, w))
    assert res.returncode == 0, res.stderr
    assert "'s0001', 's0004'" in " ".join(res.stderr.split()) and "recomputing" in res.stderr
    after = _files(w / "acts")
    for kept in (SHARD_PATTERN.format(1), SHARD_PATTERN.format(3)):  # no changed sample: reused as they were
        assert after[kept] == before[kept]
    res = run_cli(*_probe_args(tiny_llava_dir, w, "fresh"))
    assert res.returncode == 0, res.stderr
    assert torch.equal(ActivationStore(w / "acts").read(), ActivationStore(w / "fresh").read())


def test_b_overwritten_shard_bytes_are_refused_and_probe_repairs_them(w, tiny_llava_dir, run_cli,
                                                                       assert_named_error):
    shard = w / "acts" / SHARD_PATTERN.format(1)
    _flip(shard)
    earlier = _select_refused(w, run_cli, assert_named_error, str(shard), "checksum", "run the same probe command again")
    res = run_cli(*_probe_args(tiny_llava_dir, w))
    assert res.returncode == 0, res.stderr
    assert f"{shard.name} is damaged" in res.stderr
    res = run_cli("select", "--acts", w / "acts", "--out", w / "clf", "--top-k", "4")
    assert res.returncode == 0, res.stderr
    from safetensors.torch import load, load_file

    # the same SNs as before (not the same bytes: safetensors orders metadata keys differently per process)
    again, first = load_file(str(w / "clf" / CLASSIFIER_WEIGHTS)), load(earlier[CLASSIFIER_WEIGHTS])
    assert again.keys() == first.keys() and all(torch.equal(again[k], first[k]) for k in first)


def test_b_swapped_shards_are_refused(w, run_cli, assert_named_error):
    first, second = w / "acts" / SHARD_PATTERN.format(0), w / "acts" / SHARD_PATTERN.format(1)
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    _select_refused(w, run_cli, assert_named_error, str(first), "holds samples 2..3", "the manifest says 0..1", "probe")


def test_truncated_shard_is_named_and_the_same_probe_repairs_it(w, tiny_llava_dir, run_cli, assert_named_error):
    shard = w / "acts" / SHARD_PATTERN.format(2)
    shard.write_bytes(shard.read_bytes()[:300])
    _select_refused(w, run_cli, assert_named_error, str(shard), "cannot be read as a shard",
                    "run the same probe command again")
    res = run_cli(*_probe_args(tiny_llava_dir, w))
    assert res.returncode == 0, res.stderr
    assert run_cli("select", "--acts", w / "acts", "--out", w / "clf", "--top-k", "4").returncode == 0


HOLDER = textwrap.dedent("""
    import sys, time
    from superneurons.activations.probing import probe
    from superneurons.data import load_samples
    from superneurons.models import load_model

    model, data, out = sys.argv[1:4]

    def on_shard(index, path):  # a long run: it pauses after its first shard
        if index == 0:
            print("shard 0", flush=True)
            time.sleep(120)

    probe(load_model(model, dtype="float32", device="cpu"), load_samples(data), out, dtype="float32",
          shard_size=2, progress=False, on_shard=on_shard)
""")


def test_c_a_second_probe_on_a_folder_in_use_is_refused(w, tiny_llava_dir, run_cli, assert_named_error):
    out = w / "busy"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tiny_llava_dir), str(w / "data.jsonl"), str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "shard 0"
        (out / f".{SHARD_PATTERN.format(1)}.tmp-{holder.pid}").write_bytes(b"the first run's half-written shard")
        before = _files(out)
        res = run_cli(*_probe_args(tiny_llava_dir, w, "busy"))
        assert_named_error(res, f"in use by pid {holder.pid}", str(out))
        assert _files(out) == before  # nothing written, the first run's temporary file kept
    finally:
        holder.kill()
        holder.wait()
    res = run_cli(*_probe_args(tiny_llava_dir, w, "busy"))  # the holder is gone: the folder is free again
    assert res.returncode == 0, res.stderr
    assert not list(out.glob(".*.tmp-*"))
    assert json.loads((out / MANIFEST_NAME).read_text())["complete"]


def _predict(w: Path, model: Path) -> list[str | Path]:
    return ["predict", "--classifier", w / "clf", "--model", model, "--data", w / "data.jsonl",
            "--out", w / "preds.jsonl", "--device", "cpu"]


def _rewrite(path: Path, **changes: torch.Tensor) -> None:
    from safetensors.torch import load_file, save_file

    t = load_file(str(path))
    t.update(changes)
    save_file(t, str(path))


@pytest.mark.parametrize(("damage", "file", "names"), [
    ("nan_alpha", CLASSIFIER_WEIGHTS, ("alpha of SN 0", "not a finite number", "select again")),
    ("truncated", CLASSIFIER_WEIGHTS, ("cannot be read as safetensors", "select again")),
    ("no_fingerprint", CLASSIFIER_CONFIG, ("'fingerprint' is missing", "select again")),
    ("no_aggregation", CLASSIFIER_CONFIG, ("aggregation 'median' is not one of",)),
    ("layer_range", CLASSIFIER_CONFIG, ("out of range",)),
])
def test_d_a_damaged_classifier_is_named_before_any_prediction(w, tiny_llava_dir, run_cli, assert_named_error,
                                                               damage, file, names):
    weights, config = w / "clf" / CLASSIFIER_WEIGHTS, w / "clf" / CLASSIFIER_CONFIG
    cfg = json.loads(config.read_text())
    if damage == "nan_alpha":
        k = cfg["k"]
        _rewrite(weights, alpha=torch.full((k,), float("nan"), dtype=torch.float64))
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:40])
    elif damage == "no_fingerprint":
        del cfg["fingerprint"]
    elif damage == "no_aggregation":
        cfg["aggregation"] = "median"
    else:
        cfg["fingerprint"]["num_layers"] = 1
    config.write_text(json.dumps(cfg))
    (w / "preds.jsonl").write_text("earlier predictions\n")
    res = run_cli(*_predict(w, tiny_llava_dir))
    assert_named_error(res, str(w / "clf" / file), *names)
    assert (w / "preds.jsonl").read_text() == "earlier predictions\n"


def test_predictions_are_strict_json(w, tiny_llava_dir, run_cli):
    res = run_cli(*_predict(w, tiny_llava_dir))
    assert res.returncode == 0, res.stderr
    text = (w / "preds.jsonl").read_text()
    assert len([json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in {text}")) for line in text.splitlines()]) == 8
