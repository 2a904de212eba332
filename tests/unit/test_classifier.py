"""SuperNeuronClassifier: save/load round trip, clear errors for the wrong model or a damaged artifact."""

import json

import pytest
import torch

from superneurons.errors import DataError, ModelError
from superneurons.inference.classifier import (
    CLASSIFIER_CONFIG,
    CLASSIFIER_WEIGHTS,
    SuperNeuronClassifier,
    fit_classifier,
)
from superneurons.selection import SuperNeurons

FP = {"architecture": "LlavaForConditionalGeneration", "config_hash": "ab" * 32, "num_layers": 4, "hidden_size": 64}


def _sns(layers=(1, 0, 1), neurons=(5, 63, 7), rule=(1, -1, 1)) -> SuperNeurons:
    k = len(layers)
    return SuperNeurons(layers=torch.tensor(layers), neurons=torch.tensor(neurons),
                        scores=torch.linspace(0.9, 0.8, k, dtype=torch.float64),
                        alpha=torch.tensor([0.0, 0.5, -0.25][:k], dtype=torch.float64),
                        rule=torch.tensor(rule, dtype=torch.int8), metric="f1", snt=0.79)


def _clf(**kw) -> SuperNeuronClassifier:
    args = {"sns": _sns(), "fingerprint": dict(FP), "prompt_template": "USER: <image>\n{question} ASSISTANT:",
            "aggregation": "vote", "model": "tiny"}
    args.update(kw)
    return SuperNeuronClassifier(**args)


def test_save_load_round_trip(tmp_path):
    clf = _clf(meta={"sweep": [{"snt": 0.8, "k": 3}]})
    paths = clf.save(tmp_path / "clf")
    assert [p.name for p in paths] == [CLASSIFIER_WEIGHTS, CLASSIFIER_CONFIG] and all(p.is_file() for p in paths)
    cfg = json.loads(paths[1].read_text())
    assert cfg["exit_layer"] == 1 and cfg["layers_needed"] == [0, 1] and cfg["k"] == 3 and cfg["token"] == "first"
    back = SuperNeuronClassifier.load(tmp_path / "clf")
    for name in ("layers", "neurons", "scores", "alpha", "rule"):
        assert torch.equal(getattr(back.sns, name), getattr(clf.sns, name)), name
    assert (back.fingerprint, back.prompt_template, back.aggregation, back.token, back.exit_layer, back.meta) == (
        clf.fingerprint, clf.prompt_template, clf.aggregation, clf.token, clf.exit_layer, clf.meta)
    assert (back.sns.metric, back.sns.snt) == ("f1", 0.79)


def test_predict_from_acts_uses_rules_alphas_and_aggregation():
    clf = _clf()
    acts = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, -1.0]])
    # votes: row 0: 1 > 0 yes, 0 <= 0.5 yes (flipped), 0 > -0.25 yes; row 1: no, no, no
    out = clf.predict_from_acts(acts)
    assert out.preds.tolist() == [1, 0] and out.scores.tolist() == [1.0, 0.0]
    assert clf.predict_from_acts(acts, "mean").preds.tolist() == [1, 0]
    with pytest.raises(DataError, match=r"\[N, 3\]"):
        clf.predict_from_acts(acts[:, :2])


def test_damaged_or_missing_files_raise(tmp_path):
    with pytest.raises(DataError, match="not a classifier folder"):
        SuperNeuronClassifier.load(tmp_path)
    d = tmp_path / "clf"
    _clf().save(d)
    cfg = json.loads((d / CLASSIFIER_CONFIG).read_text())
    (d / CLASSIFIER_CONFIG).write_text(json.dumps({**cfg, "k": 5}))
    with pytest.raises(DataError, match="k=5"):
        SuperNeuronClassifier.load(d)
    (d / CLASSIFIER_CONFIG).write_text(json.dumps({**cfg, "exit_layer": 3}))
    with pytest.raises(DataError, match="exit_layer 3"):
        SuperNeuronClassifier.load(d)
    (d / CLASSIFIER_CONFIG).write_text("{")
    with pytest.raises(DataError, match="not valid JSON"):
        SuperNeuronClassifier.load(d)


def test_indices_out_of_range_for_the_recorded_model():
    with pytest.raises(ModelError, match="SN neuron 64 is out of range"):
        _clf(sns=_sns(neurons=(5, 64, 7)))
    with pytest.raises(ModelError, match="SN layer 4 is out of range"):
        _clf(sns=_sns(layers=(1, 4, 0)))
    with pytest.raises(DataError, match="aggregation"):
        _clf(aggregation="max")


def test_load_model_refuses_what_it_cannot_load():
    with pytest.raises(ModelError, match="truncate=True needs token 'first'.*token 'last'"):
        _clf(token="last").load_model(truncate=True)
    with pytest.raises(ModelError, match="does not record the model.*pass name_or_path"):
        _clf(model="").load_model()


def test_wrong_model_is_a_clear_error(tiny_llava):
    good = _clf(fingerprint=dict(tiny_llava.fingerprint), prompt_template=tiny_llava.prompt_template)
    good.check_compatible(tiny_llava)
    other = _clf(fingerprint={**tiny_llava.fingerprint, "config_hash": "0" * 64},
                 prompt_template=tiny_llava.prompt_template)
    with pytest.raises(ModelError, match="fingerprint mismatch on config_hash"):
        other.check_compatible(tiny_llava)
    other.check_compatible(tiny_llava, strict=False)
    wider = _clf(fingerprint={**tiny_llava.fingerprint, "hidden_size": 128}, prompt_template=tiny_llava.prompt_template)
    with pytest.raises(ModelError, match="hidden size 128.*the model has 64"):
        wider.check_compatible(tiny_llava, strict=False)
    deeper = _clf(sns=_sns(layers=(6, 0, 1)), fingerprint={**tiny_llava.fingerprint, "num_layers": 8},
                  prompt_template=tiny_llava.prompt_template)
    with pytest.raises(ModelError, match="SN layer 6 is out of range"):
        deeper.check_compatible(tiny_llava, strict=False)
    flipped = format(int(tiny_llava.fingerprint["weights"], 16) ^ int("f" * 16, 16), "064x")  # 64 of 256 bits
    retrained = _clf(fingerprint={**tiny_llava.fingerprint, "weights": flipped}, prompt_template=tiny_llava.prompt_template)
    with pytest.raises(ModelError, match="another training run"):
        retrained.check_compatible(tiny_llava)
    retrained.check_compatible(tiny_llava, strict=False)
    template = _clf(fingerprint=dict(tiny_llava.fingerprint), prompt_template="Q: {question} A:")
    with pytest.raises(ModelError, match="prompt template mismatch"):
        template.check_compatible(tiny_llava)


class _Store:
    def __init__(self, acts, labels):
        self.acts, self.labels = acts, labels
        self.layers = list(range(acts.shape[1]))
        self.num_samples, self.hidden_size = acts.shape[0], acts.shape[2]
        self.manifest = {"fingerprint": {**FP, "hidden_size": acts.shape[2], "num_layers": acts.shape[1]},
                         "prompt_template": "{question}", "token": "first", "model": "synthetic"}

    def iter_layer_chunks(self, k):
        for i in range(0, len(self.layers), k):
            yield self.layers[i:i + k], self.acts[:, i:i + k]


def test_fit_classifier_on_a_store():
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([1, 0] * 100)
    acts = torch.randn(200, 4, 16, generator=g)
    sign = torch.where(y == 1, 1.0, -1.0)
    acts[:, 1, 3] = sign + 0.5 * torch.randn(200, generator=g)
    acts[:, 3, 9] = sign + 0.4 * torch.randn(200, generator=g)
    res = fit_classifier(_Store(acts.half(), y), metric="accuracy", aggregation="vote")
    assert res.chosen is not None and res.classifier.sns.snt == res.chosen["snt"]
    assert res.best_single["layer"] == 3 and res.best_single["neuron"] == 9
    assert res.classifier.meta["sweep"] == res.sweep and res.classifier.fingerprint["hidden_size"] == 16
    early = fit_classifier(_Store(acts, y), max_layer=2, top_k=1)
    assert early.classifier.exit_layer == 1 and early.classifier.sns.neurons.tolist() == [3]


def _rewrite_tensors(path, **changes):
    from safetensors.torch import load_file, save_file

    t = load_file(str(path))
    t.update(changes)
    save_file(t, str(path))


@pytest.mark.parametrize(("edit", "named", "match"), [
    ("nan_alpha", CLASSIFIER_WEIGHTS, "alpha of SN 1 .*not a finite number"),
    ("inf_score", CLASSIFIER_WEIGHTS, "scores of SN 0 .*not a finite number"),
    ("float_layers", CLASSIFIER_WEIGHTS, "'layers' holds floats"),
    ("truncated", CLASSIFIER_WEIGHTS, "cannot be read as safetensors.*select again"),
    ("no_fingerprint", CLASSIFIER_CONFIG, "field 'fingerprint' is missing"),
    ("no_template", CLASSIFIER_CONFIG, "field 'prompt_template' is missing"),
    ("no_hidden_size", CLASSIFIER_CONFIG, "fingerprint.hidden_size"),
    ("aggregation", CLASSIFIER_CONFIG, "aggregation 'median' is not one of"),
    ("layer_range", CLASSIFIER_CONFIG, "SN layer 1 is out of range"),
    ("not_a_dict", CLASSIFIER_CONFIG, "JSON list, not a classifier config"),
])
def test_load_validates_every_field_and_names_the_file(tmp_path, edit, named, match):
    weights, config = _clf().save(tmp_path)
    cfg = json.loads(config.read_text())
    if edit == "nan_alpha":
        _rewrite_tensors(weights, alpha=torch.tensor([0.0, float("nan"), 1.0], dtype=torch.float64))
    elif edit == "inf_score":
        _rewrite_tensors(weights, scores=torch.tensor([float("inf"), 0.5, 0.5], dtype=torch.float64))
    elif edit == "float_layers":
        _rewrite_tensors(weights, layers=torch.tensor([1.0, 0.0, 1.0]))
    elif edit == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif edit == "no_hidden_size":
        del cfg["fingerprint"]["hidden_size"]
    elif edit == "aggregation":
        cfg["aggregation"] = "median"
    elif edit == "layer_range":
        cfg["fingerprint"]["num_layers"] = 1
    elif edit == "not_a_dict":
        cfg = [cfg]
    else:
        del cfg[{"no_fingerprint": "fingerprint", "no_template": "prompt_template"}[edit]]
    config.write_text(json.dumps(cfg))
    with pytest.raises(DataError, match=match) as err:
        SuperNeuronClassifier.load(tmp_path)
    assert str(tmp_path / named) in str(err.value)


def test_save_is_atomic_locked_and_strict_json(tmp_path):
    from superneurons.errors import InUseError
    from superneurons.utils.locking import output_lock

    clf = _clf(meta={"sweep": [{"snt": 0.8, "f1": float("nan"), "x": float("inf")}]})
    clf.save(tmp_path / "clf")
    text = (tmp_path / "clf" / CLASSIFIER_CONFIG).read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["meta"]["sweep"][0] == {"snt": 0.8, "f1": None, "x": None}
    assert not list((tmp_path / "clf").glob(".*tmp*"))
    before = {p.name: p.read_bytes() for p in (tmp_path / "clf").glob("classifier.*")}
    with output_lock(tmp_path / "clf"), pytest.raises(InUseError, match="in use by pid"):
        _clf(aggregation="mean").save(tmp_path / "clf")
    assert {p.name: p.read_bytes() for p in (tmp_path / "clf").glob("classifier.*")} == before
    with output_lock(tmp_path / "clf"):  # the caller holds the lock: lock=False writes
        _clf(aggregation="mean").save(tmp_path / "clf", lock=False)
    assert SuperNeuronClassifier.load(tmp_path / "clf").aggregation == "mean"
