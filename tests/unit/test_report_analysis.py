"""The demo's per-family numbers: Alg. 1 on planted activations, Alg. 2 + baselines on a tiny LLaVA."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from superneurons.data import load_samples
from superneurons.errors import DataError
from superneurons.evaluation.bench import timing_classifier
from superneurons.evaluation.compare import evaluate
from superneurons.report.analysis import analyse_probe, families_matching_model


def _planted(n: int = 80, layers: int = 4, d: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    sign = 2.0 * y - 1
    acts = 0.5 * torch.randn(n, layers, d, generator=g)
    acts[:, 3, 7] = sign + 0.1 * torch.randn(n, generator=g)  # perfect, deep
    flip = torch.zeros(n, dtype=torch.bool)
    flip[::10] = True
    acts[:, 0, 2] = torch.where(flip, -sign, sign)  # 90%, shallow
    model = y.clone()
    model[::5] = 1 - model[::5]  # the model is right on 80%
    return acts, y, model


def test_analyse_probe_finds_planted_neurons():
    acts, y, model = _planted()
    pa = analyse_probe(acts, model.tolist(), labels=y, early_max_layer=1)
    s = pa.summary
    assert s["model"]["accuracy"] == pytest.approx(0.8)
    assert (s["best_sn"]["accuracy"]["layer"], s["best_sn"]["accuracy"]["neuron"]) == (3, 7)
    assert s["best_sn"]["accuracy"]["accuracy"] == 1.0
    assert s["chosen"]["snt"] < 1.0 and (3, 7) in zip(pa.sns.layers.tolist(), pa.sns.neurons.tolist(), strict=True)
    # the early-exit set stays in layers <= 1 and holds the 90% neuron
    assert pa.early is not None and int(pa.early.layers.max()) <= 1
    assert (0, 2) in zip(pa.early.layers.tolist(), pa.early.neurons.tolist(), strict=True)
    assert s["early"]["chosen"]["exit_layer"] == 0 and s["early"]["max_layer"] == 1
    # neurons beating the model (accuracy > 0.8): per layer counts add up, both planted ones in
    b = s["beating"]
    assert len(b["per_layer"]) == 4 and sum(b["per_layer"]) == b["count"] == len(b["neurons"])
    assert [3, 7] in b["neurons"] and [0, 2] in b["neurons"]
    alpha0 = next(r for r in s["alpha_sweep"] if r["alpha"] == 0.0)
    assert alpha0["best"] == 1.0 and (alpha0["layer"], alpha0["neuron"]) == (3, 7)
    # AR@SNt: only the perfect neuron is above 0.95; it agrees with the model on 80% of samples
    top = next(r for r in s["ar_curve"] if r["snt"] == 0.95)
    assert top["k"] == 1 and top["ar"] == pytest.approx(0.8)
    assert all(0.0 <= r["ar"] <= 1.0 for r in s["ar_curve"] if r["k"])
    assert min(r["snt"] for r in s["ar_curve"]) >= 1.0 - 0.25 - 1e-9


def test_analyse_probe_selects_one_early_exit_set_per_cap():
    acts, y, model = _planted()
    pa = analyse_probe(acts, model.tolist(), labels=y, early_max_layer=[1, 2, 3])
    assert [cap for cap, _ in pa.early_sets] == [1, 2]  # 3 is the last layer: no early exit below it
    assert [e["max_layer"] for e in pa.summary["early_sets"]] == [1, 2]
    assert all(int(sns.layers.max()) <= cap for cap, sns in pa.early_sets)
    assert pa.early is pa.early_sets[0][1] and pa.summary["early"] is pa.summary["early_sets"][0]
    assert analyse_probe(acts, model.tolist(), labels=y, early_max_layer=[3]).summary["early_sets"] == []


def test_analyse_probe_checks_inputs():
    acts, y, model = _planted()
    with pytest.raises(DataError, match="labels are missing"):
        analyse_probe(acts, model.tolist())
    with pytest.raises(DataError, match="79 model answers for 80"):
        analyse_probe(acts, model[:-1].tolist(), labels=y)
    assert analyse_probe(acts, model.tolist(), labels=y, early_max_layer=3).early is None  # no layer above


def test_evaluate_with_a_cached_generation(tiny_llava, make_dataset, tmp_path, monkeypatch):
    import superneurons.evaluation.compare as ev

    samples = load_samples(make_dataset(tmp_path, 8))
    clf = timing_classifier(tiny_llava, exit_layer=1, k=4)
    gen = ([1, 0, 1, 1, 0, 0, 1, 0], ["Yes", "no", "yes.", "Sure", "No", "nope", "yes", "no"], 1.5)
    monkeypatch.setattr(ev, "generate_answers", lambda *a, **k: pytest.fail("generated again"))
    res = evaluate(clf, tiny_llava, samples, batch_size=4, generated=gen, keep_answers=True)
    assert set(res["methods"]) == {"sns_mean", "sns_vote", "model_generation", "model_generation_strict",
                                   "model_first_token"}
    assert res["methods"]["model_generation_strict"]["unparsed"] == 2  # "Sure", "nope"
    assert res["seconds"]["model_generation"] == 1.5 and res["seconds"]["sns"] > 0
    assert res["classifier"]["exit_layer"] == 1 and res["classifier"]["k"] == 4
    ref = evaluate(clf, tiny_llava, samples, batch_size=4, generate=False)
    for key in ("sns_mean", "sns_vote", "model_first_token"):
        assert res["methods"][key] == ref["methods"][key]
    assert res["agreement"]["sns_vs_model_first_token"] == ref["agreement"]["sns_vs_model_first_token"]
    assert 0.0 <= res["agreement"]["sns_vs_model_generation"] <= 1.0 and "mcq" not in res
    assert [a["model_generation"] for a in res["answers"]] == gen[0] and res["answers"][3]["text"] == "Sure"
    assert res["answers"][0]["question"] == samples[0].question and res["answers"][0]["image"] == str(samples[0].image)
    with pytest.raises(DataError, match="generated answers for 3 samples, evaluating 8"):
        evaluate(clf, tiny_llava, samples, generated=(gen[0][:3], gen[1][:3], 1.0))


def test_evaluate_mcq_question_accuracy_from_question_ids(tiny_llava, make_dataset, tmp_path):
    samples = load_samples(make_dataset(tmp_path, 8, labels=["yes", "no", "no", "no"] * 2))
    samples = [replace(s, meta={"question_id": f"q{i // 4}"}) for i, s in enumerate(samples)]  # as synth mcq
    res = evaluate(timing_classifier(tiny_llava, 1, k=3), tiny_llava, samples, generate=False, batch_size=8)
    assert set(res["mcq"]) == {"sns_mean", "sns_vote", "model_first_token"}
    assert res["mcq"]["sns_mean"]["num_questions"] == 2
    pope_like = [replace(s, meta={"question_id": i}) for i, s in enumerate(samples)]  # one id per question
    assert "mcq" not in evaluate(timing_classifier(tiny_llava, 1, k=3), tiny_llava, pope_like, generate=False,
                                 first_token=False, batch_size=8)


def test_families_matching_model():
    from report_fixtures import fake_results

    res = fake_results(("presence", "counting", "attribute"))
    assert families_matching_model(res) == ["presence", "counting", "attribute"]
    res["family"]["attribute"]["val"]["methods"]["sns_mean"]["accuracy"] = 0.5
    res["family"]["attribute"]["val"]["methods"]["sns_vote"]["accuracy"] = 0.89
    assert families_matching_model(res) == ["presence", "counting"]
