"""models/truncate.py: load only decoder layers 0..k; same activations; upper layers never read."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from superneurons.activations import capture
from superneurons.activations.probing import probe
from superneurons.activations.store import load_activations
from superneurons.data import load_samples
from superneurons.errors import ModelError
from superneurons.models import load_model
from superneurons.models.truncate import RemovedModule

_LAYER_RE = re.compile(r"\blayers\.(\d+)\.")


def layer_index(key: str) -> int | None:
    """The decoder-layer index in a parameter/checkpoint key (`...layers.12.mlp...` -> 12), else None."""
    m = _LAYER_RE.search(key)
    return int(m.group(1)) if m else None


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    from conftest import write_dataset

    return load_samples(write_dataset(tmp_path_factory.mktemp("data"), 6))


@pytest.fixture(scope="module")
def sharded_llava_dir(tiny_llava_dir, tmp_path_factory) -> Path:
    """The tiny LLaVA re-saved as many small safetensors shards + index json (like a 7B checkpoint)."""
    from transformers import LlavaForConditionalGeneration

    out = tmp_path_factory.mktemp("sharded-llava")
    LlavaForConditionalGeneration.from_pretrained(tiny_llava_dir).save_pretrained(out, max_shard_size="60KB")
    for f in tiny_llava_dir.iterdir():
        if not f.name.startswith("model") and not (out / f.name).exists():
            shutil.copy(f, out / f.name)
    assert (out / "model.safetensors.index.json").is_file()
    return out


class SafeOpenSpy:
    """Wraps `safetensors.safe_open` and records every file opened and every tensor read."""

    def __init__(self, real):
        self.real, self.files, self.read = real, [], []

    def __call__(self, path, *args, **kwargs):
        spy = self
        self.files.append(Path(path).name)
        handle = self.real(path, *args, **kwargs)

        class Handle:
            def __enter__(self):
                self.f = handle.__enter__()
                return self

            def __exit__(self, *exc):
                return handle.__exit__(*exc)

            def get_tensor(self, key):
                spy.read.append(key)
                return self.f.get_tensor(key)

            def __getattr__(self, name):
                return getattr(self.f, name)

        return Handle()


@pytest.mark.parametrize("name", ["tiny_llava", "tiny_qwen2vl", "tiny_qwen3vl"])
@pytest.mark.parametrize("k", [0, 1])
def test_truncated_model_gives_the_same_activations(name, k, request, samples):
    full = request.getfixturevalue(name)
    trunc = load_model(str(request.getfixturevalue(f"{name}_dir")), dtype="float32", device="cpu", max_layer=k)
    assert trunc.num_layers == k + 1 and trunc.max_layer == k and trunc.full_num_layers == full.num_layers
    assert trunc.fingerprint == full.fingerprint  # stores and classifiers made with the full model still match
    assert trunc.prompt_template == full.prompt_template
    expected = capture(full, samples, layers=range(k + 1), exit_layer=k, batch_size=4, progress=False)
    got = capture(trunc, samples, exit_layer=k, batch_size=4, progress=False)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_state_dict_proves_upper_layers_were_never_loaded(tiny_llava, sharded_llava_dir, monkeypatch):
    import safetensors

    spy = SafeOpenSpy(safetensors.safe_open)
    monkeypatch.setattr(safetensors, "safe_open", spy)
    k = 1
    vlm = load_model(str(sharded_llava_dir), dtype="float32", device="cpu", max_layer=k)
    monkeypatch.undo()

    keys = list(vlm.model.state_dict())
    assert max(layer_index(key) for key in keys if "language_model.layers." in key) == k
    assert not [key for key in keys if key.startswith("lm_head") or "language_model.norm" in key]
    assert isinstance(vlm.model.lm_head, RemovedModule) and isinstance(vlm.language_model.norm, RemovedModule)
    # exactly the full model's parameters minus the upper layers, the final norm and the LM head
    full = dict(tiny_llava.model.named_parameters())
    kept = {n: p for n, p in full.items()
            if not n.startswith("lm_head") and "language_model.norm" not in n
            and not ("language_model.layers." in n and layer_index(n) > k)}
    assert set(dict(vlm.model.named_parameters())) == set(kept)
    assert vlm.load_report.num_params == sum(p.numel() for p in kept.values()) < sum(p.numel() for p in full.values())
    for name, p in vlm.model.named_parameters():
        torch.testing.assert_close(p, full[name], rtol=0, atol=0)

    # what was read from disk: no upper-layer, final-norm or LM-head tensor; untouched shards never opened
    def upper(key: str) -> bool:
        i = layer_index(key) if "vision" not in key else None
        return (i is not None and i > k) or "lm_head" in key or key.endswith("model.norm.weight")

    read_files = [f for f in spy.files if f != "model.safetensors"]
    assert spy.read and not [key for key in spy.read if upper(key)]
    assert sorted(spy.read) == sorted(vlm.load_report.keys_loaded)
    assert all(upper(key) for key in vlm.load_report.keys_skipped) and vlm.load_report.keys_skipped
    assert vlm.load_report.files_skipped and not set(vlm.load_report.files_skipped) & set(read_files)
    assert sorted(set(read_files)) == sorted(vlm.load_report.files_opened)
    assert "skipped" in vlm.load_report.summary()


def test_truncated_model_refuses_what_needs_the_removed_parts(tiny_llava_dir, samples):
    vlm = load_model(str(tiny_llava_dir), dtype="float32", device="cpu", max_layer=1)
    batch = vlm.prepare(samples[:2])
    with pytest.raises(ModelError, match="truncated after decoder layer 1"):
        vlm.model(**batch)
    with pytest.raises(ModelError, match="without max_layer"):
        capture(vlm, samples[:2], token="last", max_new_tokens=2, progress=False)
    for layers, top in (([2], 2), ([-1], 3)):  # -1 is the checkpoint's last layer (3), not the last loaded (1)
        with pytest.raises(ModelError, match=rf"decoder layers 0\.\.1 only .*; layer {top} was never loaded"):
            capture(vlm, samples[:2], layers=layers, progress=False)


def test_truncation_errors(tiny_llava_dir, tmp_path):
    with pytest.raises(ModelError, match=r"outside the model's decoder layers 0\.\.3"):
        load_model(str(tiny_llava_dir), device="cpu", max_layer=4)
    bare = tmp_path / "no-weights"
    shutil.copytree(tiny_llava_dir, bare, ignore=shutil.ignore_patterns("model*.safetensors*"))
    with pytest.raises(ModelError, match="safetensors"):
        load_model(str(bare), device="cpu", max_layer=1)
    with pytest.raises(ModelError, match="device_map"):
        load_model(str(tiny_llava_dir), device="cpu", max_layer=1, device_map="auto")


def test_truncated_probe_matches_full_and_bfloat16(tiny_llava, tiny_llava_dir, samples, tmp_path):
    ref = probe(tiny_llava, samples, tmp_path / "full", exit_layer=1, dtype="float32", progress=False)
    trunc = load_model(str(tiny_llava_dir), dtype="bfloat16", device="cpu", max_layer=1)
    assert trunc.dtype == torch.bfloat16 and all(p.dtype == torch.bfloat16 for p in trunc.model.parameters())
    store = probe(trunc, samples, tmp_path / "trunc", exit_layer=1, dtype="float32", progress=False)
    assert store.fingerprint == ref.fingerprint and store.layers == ref.layers == [0, 1]
    torch.testing.assert_close(store.read(), ref.read(), atol=0.1, rtol=0.05)  # bf16 weights, fp32 store


def test_cli_truncate(tiny_llava, tiny_llava_dir, tmp_path):
    from conftest import write_dataset
    from superneurons.cli.app import _register_all, app

    _register_all()
    data = write_dataset(tmp_path, 4)
    args = ["probe", "--model", str(tiny_llava_dir), "--data", str(data), "--dtype", "float32", "--device", "cpu",
            "--exit-layer", "1"]
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "t"), "--truncate"])
    assert res.exit_code == 0, res.output
    assert "truncated: decoder layers 0..1" in " ".join(res.output.split())
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "f"), "--full-model"])
    assert res.exit_code == 0, res.output
    assert "full model, 4 decoder layers: --full-model" in " ".join(res.output.split())
    torch.testing.assert_close(load_activations(tmp_path / "t")[0], load_activations(tmp_path / "f")[0])
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "d")])  # --exit-layer K: truncated by default
    assert res.exit_code == 0 and "truncated: decoder layers 0..1" in " ".join(res.output.split()), res.output
    torch.testing.assert_close(load_activations(tmp_path / "d")[0], load_activations(tmp_path / "f")[0])
    res = CliRunner().invoke(app, [*args[:-2], "--layers", "0-1", "--out", str(tmp_path / "n")])
    assert res.exit_code == 0 and "full model" in res.output and "--exit-layer K" in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["probe", "--model", str(tiny_llava_dir), "--data", str(data),
                                   "--out", str(tmp_path / "x"), "--truncate"])
    assert res.exit_code != 0 and "--exit-layer" in str(res.exception)


def test_classifier_loads_its_model_truncated_at_l_star(tiny_llava, tiny_llava_dir, samples, tmp_path):
    from superneurons.inference.classifier import SuperNeuronClassifier
    from superneurons.selection import SuperNeurons

    store = probe(tiny_llava, samples, tmp_path / "acts", exit_layer=2, dtype="float32", progress=False)
    sns = SuperNeurons(layers=torch.tensor([1, 0]), neurons=torch.tensor([3, 7]), scores=torch.tensor([0.9, 0.8]),
                       alpha=torch.tensor([0.0, 0.01]), rule=torch.tensor([1, -1], dtype=torch.int8))
    SuperNeuronClassifier.from_store(sns, store).save(tmp_path / "clf")
    clf = SuperNeuronClassifier.load(tmp_path / "clf")
    assert clf.model == str(tiny_llava_dir) and clf.exit_layer == 1
    vlm = clf.load_model(truncate=True, dtype="float32", device="cpu")
    assert vlm.num_layers == 2 and vlm.max_layer == 1
    full = clf.predict(tiny_llava, samples)
    got = clf.predict(vlm, samples)  # strict fingerprint check passes: same checkpoint
    assert got.preds.tolist() == full.preds.tolist()
    torch.testing.assert_close(got.acts, full.acts, rtol=0, atol=0)
    default = clf.load_model(dtype="float32", device="cpu")  # truncated by default: token first, no cascade
    assert default.max_layer == 1 and default.load_choice.startswith("truncated: decoder layers 0..1 of 4")
    assert clf.predict(default, samples).preds.tolist() == full.preds.tolist()
    for kw, why in (({"truncate": False}, "truncate=False"), ({"cascade": True}, "cascade")):
        whole = clf.load_model(dtype="float32", device="cpu", **kw)
        assert whole.num_layers == 4 and not hasattr(whole, "max_layer") and why in whole.load_choice
    with pytest.raises(ModelError, match="cascade resumes"):
        clf.load_model(truncate=True, cascade=True, dtype="float32", device="cpu")


def test_truncated_model_never_answers_for_a_deeper_classifier(tiny_llava, tiny_llava_dir, samples):
    from superneurons.evaluation.bench import timing_classifier

    shallow = load_model(str(tiny_llava_dir), dtype="float32", device="cpu", max_layer=1)
    deep = timing_classifier(tiny_llava, 2, k=3)
    with pytest.raises(ModelError, match=r"loaded truncated, with decoder layers 0\.\.1 only, but these SNs read layer 2"):
        deep.predict(shallow, samples)
    timing_classifier(tiny_llava, 1, k=3).check_compatible(shallow)  # L* = 1 is loaded


def test_truncation_refusal(tiny_llava_dir, tmp_path):
    from superneurons.models.loading import truncation_refusal

    assert truncation_refusal(str(tiny_llava_dir), dtype="float32", device="cpu") is None
    assert "device_map" in truncation_refusal(str(tiny_llava_dir), device_map="auto")
    bare = tmp_path / "no-weights"
    shutil.copytree(tiny_llava_dir, bare, ignore=shutil.ignore_patterns("model*.safetensors*"))
    assert "safetensors" in truncation_refusal(str(bare))


def test_device_map_auto(tiny_llava, tiny_llava_dir, samples):
    pytest.importorskip("accelerate")
    vlm = load_model(str(tiny_llava_dir), dtype="float32", device_map="auto")  # accelerate places the weights
    assert vlm.device.type == "cpu"  # no GPU here: everything lands on the CPU
    torch.testing.assert_close(capture(vlm, samples, exit_layer=1, progress=False),
                               capture(tiny_llava, samples, exit_layer=1, progress=False))
