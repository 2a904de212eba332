"""Cascade inference: resume from L* is exact, runs layers <= L* and the vision tower once, and
mixed batches answer like one-by-one runs; margin 0 is the SNs, margin 0.5 the model."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from superneurons.activations import capture
from superneurons.activations.trace import (
    LayerTrace,
    check_resumable,
    resume,
    slice_layer_kwargs,
    verify_resume,
)
from superneurons.constants import CASCADE_JSON, CASCADE_PLOT
from superneurons.data.samples import load_samples
from superneurons.errors import DataError, ModelError
from superneurons.evaluation.baselines import first_token_margins
from superneurons.evaluation.cascade_sweep import best_margin, cascade_sweep
from superneurons.inference.cascade import (
    TEMPERATURE_KEY,
    calibrate_cascade,
    cascade_predict,
    cascade_score,
    defer_mask,
    fit_temperature,
)
from superneurons.inference.classifier import SuperNeuronClassifier
from superneurons.models.support import Support
from superneurons.selection import SuperNeurons

MODELS = ["tiny_llava", "tiny_qwen2vl", "tiny_qwen3vl"]
ATOL = 1e-4


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    from conftest import write_dataset

    return load_samples(write_dataset(tmp_path_factory.mktemp("cascade-data"), 8))


def make_classifier(vlm, samples, exit_layer: int, k: int = 6, aggregation: str = "vote") -> SuperNeuronClassifier:
    """K neurons in layers 0..exit_layer (the last in exit_layer), thresholds at their medians on
    `samples`, so the SNs split and some scores are near 0.5."""
    layers = torch.tensor([min(i, exit_layer) for i in range(k - 1)] + [exit_layer])
    neurons = (torch.arange(k) * 7 + 3) % vlm.hidden_size
    acts = capture(vlm, samples, layers=range(exit_layer + 1), exit_layer=exit_layer, progress=False)
    h = acts[:, layers, neurons]
    sns = SuperNeurons(layers=layers, neurons=neurons, scores=torch.full((k,), 0.5, dtype=torch.float64),
                       alpha=h.median(dim=0).values.double(), rule=torch.tensor([1, -1] * (k // 2) + [1] * (k % 2)))
    return SuperNeuronClassifier(sns=sns, fingerprint=dict(vlm.fingerprint), prompt_template=vlm.prompt_template,
                                 aggregation=aggregation, model=vlm.name_or_path)


def full_logits(vlm, samples) -> torch.Tensor:
    with torch.inference_mode():
        return vlm.model(**vlm.prepare(samples), use_cache=False).logits[:, -1].float()


def mixed_margin(scores: torch.Tensor) -> float:
    """A margin that defers some samples but not all (the samples with the most even SN split)."""
    d = sorted(set((scores.double() - 0.5).abs().tolist()))
    assert len(d) > 1, "the SN scores are all equally far from 0.5; the test needs a mixed batch"
    return (d[0] + d[1]) / 2


def vision_module(vlm) -> torch.nn.Module:
    inner = vlm.model.model
    return getattr(inner, "vision_tower", None) or inner.visual


# ---- resume is exact -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_resume_from_every_layer_matches_full_forward(name, samples, request):
    vlm = request.getfixturevalue(name)
    ref = full_logits(vlm, samples[:5])
    batch = vlm.prepare(samples[:5])
    for k in range(vlm.num_layers):
        with torch.inference_mode(), LayerTrace(vlm.decoder_layers, [k], -1, stop_after=k,
                                                replay=vlm.layer_replay()) as trace:
            assert trace.run(vlm.model, **batch, use_cache=False) is None
        torch.testing.assert_close(resume(vlm, trace), ref, atol=ATOL, rtol=0)
        rows = torch.tensor([1, 3, 4])  # a subset of rows: sliced state and layer arguments
        sliced = resume(vlm, trace, rows)
        torch.testing.assert_close(sliced, ref[rows], atol=ATOL, rtol=0)
        torch.testing.assert_close(sliced, resume(vlm, trace, rows, slice_rows=False), atol=ATOL, rtol=0)
    assert verify_resume(vlm, samples[:3], vlm.num_layers - 2) <= ATOL


def test_qwen3vl_resume_below_deepstack_replays_visual_features(tiny_qwen3vl, samples):
    """The tiny Qwen3-VL adds DeepStack features after layer 0: a resume from L*=0 that skipped them
    (a trace without the family's replay) would be wrong; with `vlm.layer_replay()` it is exact."""
    vlm = tiny_qwen3vl
    ref = full_logits(vlm, samples[:4])
    batch = vlm.prepare(samples[:4])
    with torch.inference_mode(), LayerTrace(vlm.decoder_layers, [0], -1, stop_after=0,
                                            replay=vlm.layer_replay()) as trace:
        trace.run(vlm.model, **batch, use_cache=False)
    assert trace.replay.embeds is not None and len(trace.replay.embeds) == 1
    with torch.inference_mode(), LayerTrace(vlm.decoder_layers, [0], -1, stop_after=0) as bare:
        bare.run(vlm.model, **batch, use_cache=False)
    assert (resume(vlm, bare) - ref).abs().max() > 100 * ATOL  # features missing
    torch.testing.assert_close(resume(vlm, trace), ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(resume(vlm, trace, torch.tensor([0, 2])), ref[[0, 2]], atol=ATOL, rtol=0)


# ---- each sample runs layers <= L* and the vision tower once ----------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_layers_and_vision_run_once_per_sample(name, samples, request):
    vlm = request.getfixturevalue(name)
    exit_layer = 1
    clf = make_classifier(vlm, samples, exit_layer)
    rows = [0] * vlm.num_layers  # rows of hidden state each decoder layer processed
    vision_calls = []
    handles = [layer.register_forward_hook(lambda m, a, o, i=i: rows.__setitem__(i, rows[i] + a[0].shape[0]))
               for i, layer in enumerate(vlm.decoder_layers)]
    handles.append(vision_module(vlm).register_forward_hook(lambda m, a, o: vision_calls.append(1)))
    try:
        out = cascade_predict(clf, vlm, samples, margin=0.5, batch_size=4)  # every sample deferred
        assert rows == [len(samples)] * vlm.num_layers
        assert len(vision_calls) == 2  # one per batch of 4
        rows[:] = [0] * vlm.num_layers
        mixed = cascade_predict(clf, vlm, samples, margin=mixed_margin(out.scores), batch_size=4)
    finally:
        for h in handles:
            h.remove()
    n_def = int(mixed.deferred.sum())
    assert 0 < n_def < len(samples)
    assert rows == [len(samples)] * (exit_layer + 1) + [n_def] * (vlm.num_layers - exit_layer - 1)
    assert len(vision_calls) == 4
    assert out.layers_used.tolist() == [vlm.num_layers] * len(samples)
    assert mixed.layers_used[~mixed.deferred].eq(exit_layer + 1).all()


# ---- mixed batches and end points ---------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_mixed_batches_answer_like_one_by_one(name, samples, request):
    vlm = request.getfixturevalue(name)
    clf = make_classifier(vlm, samples, exit_layer=0, aggregation="mean")
    m = mixed_margin(cascade_predict(clf, vlm, samples, margin=0.0).scores)
    batched = cascade_predict(clf, vlm, samples, margin=m, batch_size=8)
    assert 0 < int(batched.deferred.sum()) < len(samples), "the test needs a mixed batch"
    single = cascade_predict(clf, vlm, samples, margin=m, batch_size=1)
    whole = cascade_predict(clf, vlm, samples, margin=m, batch_size=8, slice_rows=False)
    for other in (single, whole):
        assert torch.equal(other.deferred, batched.deferred)
        assert torch.equal(other.preds, batched.preds)
        torch.testing.assert_close(other.scores, batched.scores, atol=1e-5, rtol=0)
        torch.testing.assert_close(other.model_margins, batched.model_margins, atol=ATOL, rtol=0, equal_nan=True)
    assert batched.paths == ["model" if d else "sn" for d in batched.deferred.tolist()]
    assert torch.isnan(batched.model_margins[~batched.deferred]).all()


@pytest.mark.parametrize("name", ["tiny_llava", "tiny_qwen3vl"])
def test_end_points_are_sns_only_and_model_only(name, samples, request):
    vlm = request.getfixturevalue(name)
    clf = make_classifier(vlm, samples, exit_layer=1)
    sns_only = cascade_predict(clf, vlm, samples, margin=0.0, batch_size=3)
    assert not sns_only.deferred.any()
    assert torch.equal(sns_only.preds, clf.predict(vlm, samples, batch_size=3).preds)
    assert sns_only.avg_layers == clf.exit_layer + 1
    model_only = cascade_predict(clf, vlm, samples, margin=0.5, batch_size=3)
    ref = first_token_margins(vlm, samples, batch_size=3)
    assert model_only.deferred.all()
    torch.testing.assert_close(model_only.model_margins, ref, atol=ATOL, rtol=0)
    assert torch.equal(model_only.preds, (ref > 0).long())
    assert torch.equal(model_only.sn_preds, sns_only.preds)
    assert model_only.avg_layers == vlm.num_layers


def test_predict_and_evaluate_take_a_margin(tiny_llava, samples):
    from superneurons.evaluation.compare import evaluate
    from superneurons.inference import predict

    clf = make_classifier(tiny_llava, samples, exit_layer=1)
    out = predict(clf, tiny_llava, samples, cascade_margin=0.3)
    ref = cascade_predict(clf, tiny_llava, samples, margin=0.3)
    assert torch.equal(out.preds, ref.preds) and out.paths == ref.paths
    res = evaluate(clf, tiny_llava, samples, generate=False, cascade_margin=0.3)
    c = res["cascade"]
    assert c["margin"] == 0.3 and c["deferral_rate"] == ref.deferral_rate and c["avg_layers"] == ref.avg_layers
    assert c["accuracy"] == res["methods"]["cascade"]["accuracy"] and "f1" in c and c["time_per_sample"] > 0


# ---- scores, margins and argument checks ----------------------------------------------------------
def test_scores_and_defer_rule():
    acts = torch.tensor([[1.0, 2.0, -1.0, 3.0], [0.0, 0.0, 0.0, 0.0], [-1.0, -1.0, -2.0, 5.0]])
    frac = cascade_score(acts, 0.0, None, "vote")
    assert frac.tolist() == [0.75, 0.0, 0.25]
    mean = cascade_score(acts, 0.0, None, "mean")
    torch.testing.assert_close(mean, torch.tensor([6 / 7, 0.5, 5 / 9]))
    assert ((mean > 0.5).long() == (acts.mean(1) > 0).long()).all()  # same side as the mean rule
    assert defer_mask(frac, 0.0).tolist() == [False] * 3
    assert defer_mask(frac, 0.3).tolist() == [True, False, True]
    assert defer_mask(frac, 0.5).all()  # unanimous SNs are deferred too at 0.5: the model only
    for bad in (-0.1, 0.6, "x"):
        with pytest.raises(DataError, match=r"\[0, 0.5\]"):
            defer_mask(frac, bad)


def test_calibrated_mean_score(tiny_llava, samples, tmp_path):
    g = torch.Generator().manual_seed(0)
    m = 3 * torch.randn(4000, generator=g, dtype=torch.float64)
    y = torch.bernoulli(torch.sigmoid(m / 1.5), generator=g)
    assert fit_temperature(m, y) == pytest.approx(1.5, rel=0.15)  # recovers the generating T
    acts = torch.tensor([[1.0, 3.0], [-0.2, 0.1], [-1.0, -1.0]])
    s = cascade_score(acts, 0.0, None, "mean", temperature=2.0)
    torch.testing.assert_close(s, torch.sigmoid(acts.mean(1) / 2.0))
    assert cascade_score(acts, 0.0, None, "mean")[2] == 0.0  # uncalibrated: unanimous -> 0 or 1

    from superneurons.activations.probing import probe

    store = probe(tiny_llava, samples, tmp_path / "acts", layers=range(2), dtype="float32", progress=False)
    clf = make_classifier(tiny_llava, samples, exit_layer=1, aggregation="mean")
    t = calibrate_cascade(clf, store)
    assert t > 0 and clf.meta[TEMPERATURE_KEY] == t
    clf.save(tmp_path / "clf")
    loaded = SuperNeuronClassifier.load(tmp_path / "clf")
    out = cascade_predict(loaded, tiny_llava, samples, margin=0.0)
    assert out.score_kind.startswith("calibrated") and out.summary()["score"] == out.score_kind
    torch.testing.assert_close(out.scores, cascade_score(out.acts, clf.sns.alpha, clf.sns.rule, "mean", t))
    assert torch.equal((out.scores > 0.5).long(), out.sn_preds)
    with pytest.raises(DataError, match="positive"):
        cascade_predict(loaded, tiny_llava, samples, margin=0.1, temperature=0.0)


def test_slice_layer_kwargs_rules(tiny_llava):
    b = 4
    idx = torch.tensor([1, 3])
    kw = {"attention_mask": torch.zeros(b, 1, 5, 5), "position_ids": torch.arange(3 * b * 5).view(3, b, 5),
          "position_embeddings": (torch.ones(1, 5, 8), torch.ones(b, 5, 8)), "cache_position": torch.arange(5),
          "past_key_values": None, "use_cache": False}
    out = slice_layer_kwargs(tiny_llava, kw, idx, b)
    assert out["attention_mask"].shape == (2, 1, 5, 5)
    assert torch.equal(out["position_ids"], kw["position_ids"][:, idx])
    assert out["position_embeddings"][0].shape == (1, 5, 8) and out["position_embeddings"][1].shape == (2, 5, 8)
    assert torch.equal(out["cache_position"], kw["cache_position"]) and out["use_cache"] is False
    assert slice_layer_kwargs(tiny_llava, {**kw, "past_key_values": object()}, idx, b) is None
    assert slice_layer_kwargs(tiny_llava, {"attention_mask": torch.zeros(2, 5)}, idx, b) is None


def test_refuses_what_it_cannot_resume(tiny_llava, samples):
    fake = SimpleNamespace(text_config=SimpleNamespace(layer_types=["full_attention", "sliding_attention"] * 2),
                           support=Support(), family="fake", name_or_path="m")
    with pytest.raises(ModelError, match="attention types"):
        check_resumable(fake, 1)
    check_resumable(fake, 3)
    with pytest.raises(ModelError, match="without max_layer"):
        check_resumable(SimpleNamespace(max_layer=1, name_or_path="m", text_config=fake.text_config,
                                        support=Support(), family="fake"), 3)
    with pytest.raises(ModelError, match="cascade is not exact for the fake family: no reason"):
        check_resumable(SimpleNamespace(**{**vars(fake), "support": Support(cascade=False, why="no reason")}), 3)
    clf = make_classifier(tiny_llava, samples, exit_layer=1)
    clf.token = "last"
    with pytest.raises(DataError, match="'first' token"):
        cascade_predict(clf, tiny_llava, samples, margin=0.1)


# ---- sweep, plot, CLI ---------------------------------------------------------------------------
def test_sweep_rows_and_best_margin(tiny_llava, samples):
    clf = make_classifier(tiny_llava, samples, exit_layer=1)
    rows = cascade_sweep(clf, tiny_llava, samples, margins=[0.3], batch_size=4, repeats=2)
    with pytest.raises(DataError, match="repeats"):
        cascade_sweep(clf, tiny_llava, samples, margins=[0.3], repeats=0)
    assert [r["margin"] for r in rows] == [0.0, 0.3, 0.5]
    assert [r["point"] for r in rows] == ["SNs only", "", "model only"]
    rates = [r["deferral_rate"] for r in rows]
    assert rates[0] == 0.0 and rates[-1] == 1.0 and rates == sorted(rates)
    assert rows[0]["avg_layers"] == 2 and rows[-1]["avg_layers"] == tiny_llava.num_layers
    y = torch.tensor([s.y for s in samples])
    first = (first_token_margins(tiny_llava, samples) > 0).long()
    assert math.isclose(rows[-1]["accuracy"], float((first == y).double().mean()))
    assert all(r["time_per_sample"] > 0 and 0 <= r["f1"] <= 1 for r in rows)

    fake = [{"margin": 0.0, "point": "SNs only", "accuracy": 0.8, "avg_layers": 5},
            {"margin": 0.1, "point": "", "accuracy": 0.9, "avg_layers": 7},
            {"margin": 0.2, "point": "", "accuracy": 0.9, "avg_layers": 8},
            {"margin": 0.5, "point": "model only", "accuracy": 0.85, "avg_layers": 32}]
    assert best_margin(fake)["margin"] == 0.1
    assert best_margin([fake[0], {**fake[1], "accuracy": 0.7}, fake[3]]) is None
    assert best_margin([{**fake[0], "accuracy": 0.95}, fake[1], fake[3]]) is None  # end points never count


def test_plot_cascade(tmp_path):
    pytest.importorskip("matplotlib")
    from superneurons.report.cascade_plot import plot_cascade

    rows = [{"margin": m, "accuracy": a, "avg_layers": lay, "time_per_sample": t, "point": p}
            for m, a, lay, t, p in ((0.0, 0.8, 5, 0.01, "SNs only"), (0.2, 0.9, 9, 0.02, ""),
                                    (0.5, 0.85, 32, 0.05, "model only"))]
    fig = plot_cascade(rows, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000 and len(fig.axes) == 2
    with pytest.raises(DataError, match="lack"):
        plot_cascade([{"margin": 0.0}])


def test_cascade_sweep_cli(tiny_llava_dir, tiny_llava, samples, tmp_path):
    from typer.testing import CliRunner

    from conftest import write_dataset
    from superneurons.cli.app import _register_all, app

    _register_all()
    data = write_dataset(tmp_path / "d", 6)
    clf = make_classifier(tiny_llava, load_samples(data), exit_layer=1)
    clf.save(tmp_path / "clf")
    res = CliRunner().invoke(app, ["cascade-sweep", "-c", str(tmp_path / "clf"), "-m", str(tiny_llava_dir),
                                   "-d", str(data), "--margins", "0.2", "--out", str(tmp_path / "out"),
                                   "--device", "cpu", "--model-dtype", "float32", "--batch-size", "3"])
    assert res.exit_code == 0, res.output
    assert "SNs only" in res.output and "model only" in res.output
    result = json.loads((tmp_path / "out" / CASCADE_JSON).read_text())
    assert [r["margin"] for r in result["rows"]] == [0.0, 0.2, 0.5] and result["exit_layer"] == 1
    assert (tmp_path / "out" / CASCADE_PLOT).is_file()  # matplotlib is in the dev extra
    bad = CliRunner().invoke(app, ["cascade-sweep", "-c", str(tmp_path / "clf"), "-m", str(tiny_llava_dir),
                                   "-d", str(data), "--margins", "0.2,x"])
    assert bad.exit_code != 0 and "--margins" in str(bad.exception)
