"""Classifiers on the Hub, offline: `from_pretrained` from a local Hub cache (HF_HUB_OFFLINE=1) and
`push_to_hub` against a recording stand-in for `huggingface_hub.HfApi` (no network, ever)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import ModelCard
from typer.testing import CliRunner

from superneurons.constants import CLASSIFIER_CONFIG, CLASSIFIER_WEIGHTS, MODEL_CARD
from superneurons.data.question_format import QuestionFormat
from superneurons.data.samples import load_samples
from superneurons.errors import DataError
from superneurons.inference.classifier import SuperNeuronClassifier, fit_classifier
from superneurons.testing.hub import cache_repo

REPO = "user/super-neurons"
SHA = "0123456789abcdef0123456789abcdef01234567"


def _files(folder: Path, sub: str | None) -> dict[str, Path]:
    return {f"{sub}/{n}" if sub else n: folder / n for n in (CLASSIFIER_WEIGHTS, CLASSIFIER_CONFIG)}


def _same(a: SuperNeuronClassifier, b: SuperNeuronClassifier) -> bool:
    return (a.to_config() == b.to_config() and torch.equal(a.sns.neurons, b.sns.neurons)
            and torch.equal(a.sns.alpha, b.sns.alpha))


@pytest.fixture(scope="module")
def tiny_clf(tiny_llava, tmp_path_factory):
    """A classifier probed on the tiny LLaVA (12 samples), its folder and a held-out data file."""
    from conftest import write_dataset
    from superneurons.activations.probing import probe

    root = tmp_path_factory.mktemp("hub")
    store = probe(tiny_llava, load_samples(write_dataset(root, 12, name="probe.jsonl", seed=3)), root / "acts",
                  dtype="float32", progress=False)
    clf = fit_classifier(store, max_layer=1, aggregation="vote").classifier  # the SNt sweep picks the set
    clf.save(root / "clf")
    return clf, root / "clf", write_dataset(root, 6, name="test.jsonl", seed=4)


def test_the_probe_records_the_question_format_and_revision(tiny_clf):
    clf, _, _ = tiny_clf
    # the dataset's questions: "Is there a {obj}[ on the left]* in the image ? Answer with yes or no ."
    assert clf.question_format == QuestionFormat("Is there a ", " in the image ? Answer with yes or no .")
    assert clf.model_revision is None  # a local folder has no Hub commit
    back = SuperNeuronClassifier.load(tiny_clf[1])
    assert back.question_format == clf.question_format and "model_revision" in json.loads(
        (tiny_clf[1] / CLASSIFIER_CONFIG).read_text())


def test_from_pretrained_reads_a_subfolder_from_the_offline_hub_cache(tiny_clf, tmp_path):
    clf, folder, _ = tiny_clf
    assert huggingface_hub.constants.HF_HUB_OFFLINE  # conftest: no request can leave this machine
    cache = tmp_path / "hub"
    cache_repo(cache, REPO, {**_files(folder, "pope"), "README.md": folder / CLASSIFIER_CONFIG})
    info = huggingface_hub.scan_cache_dir(cache)  # huggingface_hub reads the layout as its own
    assert not info.warnings and [r.repo_id for r in info.repos] == [REPO]
    for got in (SuperNeuronClassifier.from_pretrained(REPO, subfolder="pope", cache_dir=cache),
                SuperNeuronClassifier.from_pretrained(f"{REPO}/pope", cache_dir=cache)):
        assert _same(got, clf)
    assert _same(SuperNeuronClassifier.from_pretrained(folder), clf)  # a folder goes straight to load
    with pytest.raises(DataError, match=r"subfolder 'nope'.*holds no classifier\.safetensors.*offline"):
        SuperNeuronClassifier.from_pretrained(REPO, subfolder="nope", cache_dir=cache)
    with pytest.raises(DataError, match=r"holds no classifier"):  # the root has no classifier
        SuperNeuronClassifier.from_pretrained(REPO, cache_dir=cache)
    with pytest.raises(DataError, match=r"cannot get the classifier user/other .*LocalEntryNotFoundError"):
        SuperNeuronClassifier.from_pretrained("user/other", cache_dir=cache)
    with pytest.raises(DataError, match=r"neither a classifier folder on this machine nor a Hub id"):
        SuperNeuronClassifier.from_pretrained("bad..name/x", cache_dir=cache)


def test_from_pretrained_reads_the_revision_asked_for(tiny_clf, tmp_path):
    clf, folder, _ = tiny_clf
    cache = tmp_path / "hub"
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    cfg = json.loads((other / CLASSIFIER_CONFIG).read_text())
    (other / CLASSIFIER_CONFIG).write_text(json.dumps({**cfg, "aggregation": "mean"}))
    cache_repo(cache, REPO, _files(folder, "pope"), commit=SHA)
    cache_repo(cache, REPO, _files(other, "pope"), revision="main")  # main moved on
    assert SuperNeuronClassifier.from_pretrained(REPO, "pope", cache_dir=cache).aggregation == "mean"
    assert SuperNeuronClassifier.from_pretrained(REPO, "pope", revision=SHA, cache_dir=cache).aggregation == \
        clf.aggregation
    with pytest.raises(DataError, match=f"at '{'f' * 40}'"):
        SuperNeuronClassifier.from_pretrained(REPO, "pope", revision="f" * 40, cache_dir=cache)


def test_cli_predict_takes_a_hub_id_from_the_cache(tiny_clf, tiny_llava, tiny_llava_dir, tmp_path, monkeypatch):
    clf, folder, data = tiny_clf
    cache = tmp_path / "hub"
    cache_repo(cache, REPO, {**_files(folder, None), **_files(folder, "pope")}, commit=SHA)
    want = clf.predict(tiny_llava, load_samples(data)).preds.tolist()
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}  # a fresh process, as a user runs it
    out = tmp_path / "preds.jsonl"
    res = subprocess.run([sys.executable, "-m", "superneurons", "predict", "--classifier", REPO,
                          "--model", str(tiny_llava_dir), "--data", str(data), "--out", str(out), "--device", "cpu"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert [json.loads(line)["prediction"] for line in out.read_text().splitlines()] == want

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    from superneurons.cli.app import _register_all, app

    _register_all()
    res = CliRunner().invoke(app, ["predict", "--classifier", f"{REPO}/pope", "--revision", SHA, "--model",
                                   str(tiny_llava_dir), "--data", str(data), "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert [json.loads(line)["prediction"] for line in out.read_text().splitlines()] == want
    cache_repo(cache, "user/empty", {"README.md": folder / CLASSIFIER_CONFIG})
    for cmd in ("predict", "evaluate", "cascade-sweep", "bench"):
        extra = ["--out", str(tmp_path / "p.jsonl")] if cmd == "predict" else []
        res = CliRunner().invoke(app, [cmd, "--classifier", "user/empty", "--model", str(tiny_llava_dir), "--data",
                                       str(data), *extra])
        assert isinstance(res.exception, DataError) and "holds no classifier" in str(res.exception), cmd
    res = CliRunner().invoke(app, ["cascade-sweep", "--classifier", f"{REPO}/pope", "--model", str(tiny_llava_dir),
                                   "--data", str(data), "--calibrate", str(folder)])
    assert isinstance(res.exception, DataError) and "is a Hub id" in str(res.exception)


class FakeApi:
    """Records what `push_to_hub` asks of `huggingface_hub.HfApi`, with the uploaded files' contents."""

    calls: list[tuple[str, dict]] = []
    files: dict[str, bytes] = {}
    has_readme = False

    def __init__(self, **kwargs):
        FakeApi.calls.append(("init", kwargs))

    def create_repo(self, repo_id, **kwargs):
        FakeApi.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs):
        FakeApi.calls.append(("upload_folder", kwargs))
        root = Path(kwargs["folder_path"])
        prefix = f"{kwargs['path_in_repo']}/" if kwargs.get("path_in_repo") else ""
        FakeApi.files.update({prefix + p.name: p.read_bytes() for p in root.iterdir()})
        return type("CommitInfo", (), {"commit_url": f"https://hub.example/{kwargs['repo_id']}/commit/1"})()

    def file_exists(self, repo_id, filename, **kwargs):
        FakeApi.calls.append(("file_exists", {"repo_id": repo_id, "filename": filename}))
        return FakeApi.has_readme or filename in FakeApi.files

    def upload_file(self, **kwargs):
        FakeApi.calls.append(("upload_file", kwargs))
        FakeApi.files[kwargs["path_in_repo"]] = kwargs["path_or_fileobj"]


@pytest.fixture
def fake_api(monkeypatch):
    FakeApi.calls, FakeApi.files, FakeApi.has_readme = [], {}, False
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    return FakeApi


def _hub_clf(clf: SuperNeuronClassifier) -> SuperNeuronClassifier:
    """`clf` as if probed on a Hub checkpoint (a Hub id and its commit)."""
    return SuperNeuronClassifier(sns=clf.sns, fingerprint=clf.fingerprint, prompt_template=clf.prompt_template,
                                 token=clf.token, aggregation=clf.aggregation, model="llava-hf/llava-1.5-7b-hf",
                                 meta=clf.meta, model_revision=SHA, question_format=clf.question_format)


def test_push_to_hub_uploads_the_folder_and_a_card(tiny_clf, fake_api, tmp_path):
    clf = _hub_clf(tiny_clf[0])
    metrics = {"n": 6, "methods": {"sns_vote": {"accuracy": 0.8333, "precision": 1.0, "recall": 0.75, "f1": 0.857}}}
    info = clf.push_to_hub(REPO, subfolder="pope", private=True, token="hf_x", metrics=metrics)
    assert info.commit_url.endswith("/commit/1")
    names = [c[0] for c in fake_api.calls]
    assert names == ["init", "create_repo", "upload_folder", "file_exists", "upload_file"]
    assert fake_api.calls[0][1]["token"] == "hf_x" and fake_api.calls[0][1]["library_name"] == "superneurons"
    assert fake_api.calls[1][1] == {"repo_id": REPO, "private": True, "exist_ok": True}
    up = fake_api.calls[2][1]
    assert up["repo_id"] == REPO and up["path_in_repo"] == "pope"
    assert set(fake_api.files) == {"pope/" + n for n in (CLASSIFIER_WEIGHTS, CLASSIFIER_CONFIG, MODEL_CARD)} | {
        MODEL_CARD}
    # the uploaded files are the classifier
    back = tmp_path / "back"
    back.mkdir()
    for n in (CLASSIFIER_WEIGHTS, CLASSIFIER_CONFIG):
        (back / n).write_bytes(fake_api.files[f"pope/{n}"])
    assert _same(SuperNeuronClassifier.load(back), clf)
    card = ModelCard(fake_api.files[f"pope/{MODEL_CARD}"].decode())
    data = card.data.to_dict()
    assert data["library_name"] == "superneurons" and data["base_model"] == "llava-hf/llava-1.5-7b-hf"
    assert data["base_model_relation"] == "adapter" and data["base_model_revision"] == SHA
    assert "superneurons" in data["tags"] and "LlavaForConditionalGeneration" in data["tags"]
    text = card.text
    assert f"```\n{clf.prompt_template}\n```" in text  # the exact template, verbatim
    chosen = clf.meta["chosen"]
    assert f"SNt {chosen['snt']}, K={chosen['k']} | {100 * chosen['vote_accuracy']:.1f} |" in text
    assert "| sns_vote | 83.3 | 100.0 | 75.0 | 85.7 |" in text and "On 6 labelled validation samples" in text
    assert f'from_pretrained("{REPO}", subfolder="pope")' in text and f"classifier={REPO}/pope" in text
    assert "'Is there a '" in text and f"revision `{SHA}`" in text
    root = ModelCard(fake_api.files[MODEL_CARD].decode())
    assert root.data.library_name == "superneurons" and 'subfolder="SUBFOLDER"' in root.text

    fake_api.calls, fake_api.files, fake_api.has_readme = [], {}, True  # a repo with its own README
    tiny_clf[0].push_to_hub(REPO, subfolder="other")
    assert "upload_file" not in [c[0] for c in fake_api.calls]
    local = ModelCard(fake_api.files[f"other/{MODEL_CARD}"].decode()).data.to_dict()
    assert "base_model" not in local  # a local model folder is no Hub base model


def test_push_errors_and_the_cli(tiny_clf, fake_api, tmp_path, monkeypatch):
    _, folder, _ = tiny_clf
    from superneurons.cli.app import _register_all, app

    _register_all()
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"n": 2, "methods": {"sns_mean": {"accuracy": 1.0, "precision": 1.0,
                                                                    "recall": 1.0, "f1": 1.0}}}))
    res = CliRunner().invoke(app, ["push", str(folder), REPO, "--subfolder", "pope", "--private",
                                   "--metrics", str(metrics), "--message", "first"])
    assert res.exit_code == 0, res.output
    assert f"to {REPO}/pope: https://hub.example/{REPO}/commit/1" in " ".join(res.output.split())
    assert fake_api.calls[2][1]["commit_message"] == "first"
    assert "| sns_mean | 100.0 |" in fake_api.files[f"pope/{MODEL_CARD}"].decode()
    res = CliRunner().invoke(app, ["push", str(folder), REPO, "--metrics", str(tmp_path / "none.json")])
    assert isinstance(res.exception, DataError) and "no such file" in str(res.exception)

    def refuse(self, repo_id, **kwargs):
        raise huggingface_hub.errors.LocalTokenNotFoundError("Token is required but no token found")

    monkeypatch.setattr(FakeApi, "create_repo", refuse)
    with pytest.raises(DataError, match=r"cannot push to user/super-neurons.*no token found.*hf auth login"):
        SuperNeuronClassifier.load(folder).push_to_hub(REPO)
