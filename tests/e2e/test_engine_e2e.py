"""The engine end to end on a tiny LLaVA: probe -> select -> save -> load -> predict (early exit) -> evaluate."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
import torch
from typer.testing import CliRunner

from superneurons.activations.probing import probe
from superneurons.activations.store import ActivationStore
from superneurons.cli.app import _register_all, app
from superneurons.data.samples import load_samples
from superneurons.evaluation.compare import evaluate
from superneurons.inference.classifier import CLASSIFIER_CONFIG, SuperNeuronClassifier, fit_classifier
from superneurons.scoring.metrics import binary_metrics


@contextmanager
def count_layer_calls(vlm):
    """Number of forward calls of each decoder layer inside the block."""
    calls = [0] * vlm.num_layers
    handles = [layer.register_forward_hook(lambda *_a, i=i: calls.__setitem__(i, calls[i] + 1))
               for i, layer in enumerate(vlm.decoder_layers)]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


@pytest.fixture(scope="module")
def probed(tiny_llava, tmp_path_factory):
    from conftest import write_dataset

    root = tmp_path_factory.mktemp("engine")
    train = load_samples(write_dataset(root, 24, name="train.jsonl", seed=1))
    test_path = write_dataset(root, 10, name="test.jsonl", seed=2)
    store = probe(tiny_llava, train, root / "acts", dtype="float32", batch_size=8, progress=False)
    return root, store, test_path


def test_probe_select_save_load_predict_with_early_exit(tiny_llava, probed):
    root, store, test_path = probed
    assert store.num_samples == 24 and store.layers == [0, 1, 2, 3]
    res = fit_classifier(store, metric="accuracy", max_layer=1, aggregation="vote")
    clf = res.classifier
    assert clf.exit_layer <= 1 and clf.sns.k >= 1
    assert res.chosen is not None and clf.sns.snt == res.chosen["snt"]
    assert clf.fingerprint == tiny_llava.fingerprint and clf.prompt_template == tiny_llava.prompt_template
    paths = clf.save(root / "clf")
    assert (root / "clf" / CLASSIFIER_CONFIG) in paths

    loaded = SuperNeuronClassifier.load(root / "clf")
    train = load_samples(root / "train.jsonl")
    with count_layer_calls(tiny_llava) as calls:
        out = loaded.predict(tiny_llava, train, batch_size=8)
    batches = 3
    assert calls[: loaded.exit_layer + 1] == [batches] * (loaded.exit_layer + 1)
    assert calls[loaded.exit_layer + 1:] == [0] * (tiny_llava.num_layers - loaded.exit_layer - 1)  # skipped

    # the activations at prediction time are the probed ones, so the probe's sweep numbers reproduce
    stored = store.read()[:, loaded.sns.layers, loaded.sns.neurons]
    torch.testing.assert_close(out.acts, stored, atol=1e-4, rtol=1e-4)
    acc = binary_metrics(out.preds, store.labels)["accuracy"]
    assert acc == pytest.approx(res.chosen["vote_accuracy"])

    # a full forward for comparison: every layer runs
    with count_layer_calls(tiny_llava) as calls:
        from superneurons.evaluation.baselines import first_token_margins

        first_token_margins(tiny_llava, train[:8], batch_size=8)
    assert calls == [1] * tiny_llava.num_layers


def test_evaluate_reports_every_method(tiny_llava, probed):
    root, store, test_path = probed
    clf = fit_classifier(store, top_k=3).classifier
    samples = load_samples(test_path)
    result = evaluate(clf, tiny_llava, samples, batch_size=5, max_new_tokens=2, keep_answers=True)
    json.dumps(result)  # JSON-able
    assert set(result["methods"]) == {"sns_mean", "sns_vote", "model_generation", "model_generation_strict",
                                      "model_first_token"}
    for m in result["methods"].values():
        assert {"accuracy", "precision", "recall", "f1", "yes_ratio", "unparsed"} <= set(m) and m["n"] == 10
    assert 0.0 <= result["agreement"]["sns_vs_model_generation"] <= 1.0
    assert result["classifier"]["k"] == 3 and len(result["answers"]) == 10
    direct = clf.predict(tiny_llava, samples, aggregation="mean")
    assert result["methods"]["sns_mean"] == binary_metrics(direct.preds, [s.y for s in samples])


def test_cli_select_predict_evaluate(tiny_llava, tiny_llava_dir, probed, tmp_path):
    root, store, test_path = probed
    _register_all()
    cli = CliRunner()
    res = cli.invoke(app, ["select", "--acts", str(store.directory), "--out", str(tmp_path / "clf"),
                           "--max-layer", "2", "--aggregation", "vote"])
    assert res.exit_code == 0, res.output
    assert "SNt sweep" in res.output and "per layer" in res.output and "best single neuron" in res.output
    clf = SuperNeuronClassifier.load(tmp_path / "clf")
    assert clf.exit_layer <= 2 and clf.aggregation == "vote"

    res = cli.invoke(app, ["predict", "--classifier", str(tmp_path / "clf"), "--model", str(tiny_llava_dir),
                           "--data", str(test_path), "--out", str(tmp_path / "preds.jsonl"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and {r["answer"] for r in rows} <= {"yes", "no"} and rows[0]["id"] == "s0000"
    assert f"truncated: decoder layers 0..{clf.exit_layer} of 4 loaded" in " ".join(res.output.split())

    # by default layers 0..L* only; --full-model: the whole model, same answers; --cascade-margin 0.5: every
    # sample goes to the model (which the cascade loads whole)
    res = cli.invoke(app, ["predict", "--classifier", str(tmp_path / "clf"), "--model", str(tiny_llava_dir),
                           "--data", str(test_path), "--out", str(tmp_path / "full.jsonl"), "--device", "cpu",
                           "--full-model"])
    assert res.exit_code == 0, res.output
    assert "full model, 4 decoder layers: asked for" in " ".join(res.output.split())
    full = [json.loads(line) for line in (tmp_path / "full.jsonl").read_text().splitlines()]
    assert full == rows
    res = cli.invoke(app, ["predict", "--classifier", str(tmp_path / "clf"), "--model", str(tiny_llava_dir),
                           "--data", str(test_path), "--out", str(tmp_path / "casc.jsonl"), "--device", "cpu",
                           "--cascade-margin", "0.5"])
    assert res.exit_code == 0, res.output
    casc = [json.loads(line) for line in (tmp_path / "casc.jsonl").read_text().splitlines()]
    assert {r["path"] for r in casc} == {"model"} and "10 of 10 deferred" in res.output
    assert "full model, 4 decoder layers: a cascade resumes" in " ".join(res.output.split())
    from superneurons.evaluation.baselines import first_token_margins

    model_answers = first_token_margins(tiny_llava, load_samples(test_path)) > 0  # tiny_llava = tiny_llava_dir
    assert [r["prediction"] for r in casc] == model_answers.long().tolist()
    res = cli.invoke(app, ["predict", "--classifier", str(tmp_path / "clf"), "--model", str(tiny_llava_dir),
                           "--data", str(test_path), "--out", str(tmp_path / "x.jsonl"), "--truncate",
                           "--cascade-margin", "0.1"])
    assert res.exit_code != 0 and "use one of them" in str(res.exception)

    res = cli.invoke(app, ["evaluate", "--classifier", str(tmp_path / "clf"), "--model", str(tiny_llava_dir),
                           "--data", str(test_path), "--out", str(tmp_path / "metrics.json"), "--device", "cpu",
                           "--max-new-tokens", "2", "--limit", "6", "--cascade-margin", "0"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n"] == 6 and "sns_vote" in metrics["methods"] and "agreement" in metrics
    # margin 0: nothing deferred, so the cascade answers as the SNs (vote) do
    assert metrics["cascade"]["deferred"] == 0 and metrics["methods"]["cascade"] == metrics["methods"]["sns_vote"]

    res = cli.invoke(app, ["select", "--acts", str(store.directory), "--out", str(tmp_path / "x"), "--snt", "1.0"])
    assert res.exit_code != 0 and "lower snt" in str(res.exception)  # nothing scores > 1.0


def test_store_from_disk_scores_like_the_tensor(probed):
    _, store, _ = probed
    from superneurons.scoring.neurons import score_neurons

    reopened = ActivationStore(store.directory)
    a = score_neurons(reopened, chunk_layers=3)
    b = score_neurons(reopened.read(), reopened.labels)
    for k in a:
        assert torch.equal(a[k], b[k])
