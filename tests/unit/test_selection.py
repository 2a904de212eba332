"""SN selection (eq. 5, top-k, max layer) and the SNt sweep protocol on synthetic tensors."""

import pytest
import torch

from superneurons.errors import DataError
from superneurons.inference.aggregation import aggregate, agreement_rate, sn_votes, vote
from superneurons.scoring.metrics import binary_metrics
from superneurons.scoring.neurons import NeuronScores, probe_neurons, score_neurons
from superneurons.selection import choose_snt, select_super_neurons, snt_candidates, snt_sweep


def mean(acts, alpha=0.0, rule=None):
    """The `mean` aggregation's answers."""
    return aggregate(acts, "mean", alpha, rule)[0]


def _scores(acc: list[list[float]], layers=None) -> NeuronScores:
    a = torch.tensor(acc, dtype=torch.float64)
    return NeuronScores({"accuracy": a, "alpha": torch.zeros_like(a), "rule": torch.ones(a.shape, dtype=torch.int8)},
                        layers or list(range(a.shape[0])), 100)


def test_snt_is_strict_and_results_are_best_first():
    s = _scores([[0.5, 0.92, 0.6], [0.95, 0.92, 0.91]])
    sn = select_super_neurons(s, snt=0.92)
    assert sn.layers.tolist() == [1] and sn.neurons.tolist() == [0]  # 0.92 itself is not > 0.92
    sn = select_super_neurons(s, snt=0.9)
    assert sn.scores.tolist() == [0.95, 0.92, 0.92, 0.91]
    assert list(zip(sn.layers.tolist(), sn.neurons.tolist(), strict=True))[1:3] == [(0, 1), (1, 1)]  # tie: shallower first
    assert sn.exit_layer == 1 and sn.per_layer() == {0: 1, 1: 3} and sn.k == 4


def test_top_k_max_layer_and_default_best_single():
    s = _scores([[0.7, 0.8], [0.9, 0.6], [0.99, 0.5]], layers=[3, 7, 12])
    assert select_super_neurons(s).rows() == [{"layer": 12, "neuron": 0, "score": 0.99, "alpha": 0.0, "rule": 1}]
    sn = select_super_neurons(s, top_k=2, max_layer=7)
    assert sn.layers.tolist() == [7, 3] and sn.neurons.tolist() == [0, 1] and sn.exit_layer == 7
    sn = select_super_neurons(s, snt=0.75, top_k=10)
    assert sn.k == 3
    with pytest.raises(DataError, match="best: 0.9900 at layer 12, neuron 0"):
        select_super_neurons(s, snt=0.995)
    with pytest.raises(DataError, match="0.92, not 92"):
        select_super_neurons(s, snt=92)
    with pytest.raises(DataError, match="keeps no scored layer"):
        select_super_neurons(s, max_layer=1)
    with pytest.raises(DataError, match="scored metrics: accuracy"):
        select_super_neurons(s, metric="f1")


def test_selection_carries_per_neuron_alpha_and_rule():
    y = torch.tensor([1, 0] * 20)
    acts = torch.randn(40, 2, 4) * 0.1
    acts[:, 1, 2] = torch.where(y == 1, -1.0, 1.0)
    s = score_neurons(acts, y, polarity="both")
    sn = select_super_neurons(s)
    assert (sn.layers.item(), sn.neurons.item(), sn.rule.item()) == (1, 2, -1)


def test_snt_candidates_follow_the_paper_protocol():
    assert snt_candidates(0.925) == [0.92, 0.91, 0.90]
    assert snt_candidates(0.92) == [0.91, 0.90, 0.89]  # SNt = best would select nothing
    fine = snt_candidates(0.961, step=0.001)
    assert fine[0] == 0.96 and fine[-1] == 0.931 and len(fine) == 30
    assert snt_candidates(0.005) == [0.0]
    with pytest.raises(DataError, match="divide 1"):
        snt_candidates(0.9, step=0.03)


def _planted(n: int = 300, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor([1, 0] * (n // 2))
    acts = torch.randn(n, 4, 16, generator=g)
    sign = torch.where(y == 1, 1.0, -1.0)
    for layer, neuron, noise in ((0, 3, 0.6), (1, 5, 0.7), (2, 8, 0.75), (3, 1, 0.5), (3, 9, 0.8)):
        acts[:, layer, neuron] = sign + noise * torch.randn(n, generator=g)
    return acts, y


def test_snt_sweep_rows_match_direct_selection_and_aggregation():
    acts, y = _planted()
    model = torch.where(torch.rand(300, generator=torch.Generator().manual_seed(5)) < 0.8, y, 1 - y)
    model[:7] = -1  # unparsed model answers agree with no SN
    probe = probe_neurons(acts, y, keep_metric="accuracy")
    rows = snt_sweep(probe, model_preds=model)
    best = float(probe.scores["accuracy"].max())
    assert [r["snt"] for r in rows] == snt_candidates(best)
    assert [r["k"] for r in rows] == sorted(r["k"] for r in rows)  # lower SNt, more SNs
    flat = acts.reshape(300, -1)
    for r in rows:
        sn = select_super_neurons(probe.scores, snt=r["snt"])
        assert r["k"] == sn.k and r["exit_layer"] == sn.exit_layer and r["num_layers"] == len(sn.per_layer())
        h = flat[:, sn.layers * 16 + sn.neurons]
        votes = sn_votes(h)
        assert r["vote_accuracy"] == binary_metrics(vote(votes), y)["accuracy"]
        assert r["vote_f1"] == binary_metrics(vote(votes), y)["f1"]
        assert r["mean_accuracy"] == binary_metrics(mean(h), y)["accuracy"]
        assert r["ar"] == pytest.approx(agreement_rate(votes.long(), model))
    assert snt_sweep(acts, y, model_preds=model) == rows  # one pass from the raw tensor, same table
    chosen = choose_snt(rows, by="vote_accuracy")
    assert chosen["vote_accuracy"] == max(r["vote_accuracy"] for r in rows)


def test_snt_sweep_with_max_layer_and_explicit_grid():
    acts, y = _planted()
    rows = snt_sweep(acts, y, max_layer=1)
    assert rows and all(r["exit_layer"] <= 1 for r in rows if r["k"])
    best01 = float(score_neurons(acts[:, :2], y)["accuracy"].max())
    assert rows[0]["snt"] == snt_candidates(best01)[0]
    grid = snt_sweep(acts, y, snts=[0.9, 0.7, 0.6])
    assert [r["snt"] for r in grid] == [0.9, 0.7, 0.6]
    probe = probe_neurons(acts, y, keep_metric="accuracy", keep_within=0.01)
    with pytest.raises(DataError, match="larger keep_within"):
        snt_sweep(probe, snts=[0.5])
    with pytest.raises(DataError, match="cannot choose by"):
        choose_snt(rows, by="vote_auc")


def test_snt_sweep_with_fitted_rules_and_thresholds_matches_direct_aggregation():
    acts, y = _planted(seed=1)
    acts[:, 2, 11] = -acts[:, 2, 8] + 0.3  # an anti-correlated copy, off-centre
    acts = acts.half()
    probe = probe_neurons(acts, y, polarity="both", per_neuron_alpha=True, keep_metric="accuracy", keep_above=0.55)
    assert int(probe.scores["rule"][2, 11]) == -1
    rows = snt_sweep(probe, snts=[0.95, 0.9, 0.8, 0.6])
    assert [r["k"] for r in rows] == sorted(r["k"] for r in rows) and rows[-1]["k"] > rows[0]["k"]
    flat = acts.reshape(300, -1)
    for r in rows:
        sn = select_super_neurons(probe.scores, snt=r["snt"])
        assert r["k"] == sn.k
        h = flat[:, sn.layers * 16 + sn.neurons]
        assert r["vote_accuracy"] == binary_metrics(vote(sn_votes(h, sn.alpha, sn.rule)), y)["accuracy"]
        assert r["mean_accuracy"] == binary_metrics(mean(h, sn.alpha, sn.rule), y)["accuracy"]
