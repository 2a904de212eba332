"""Aggregation of SN predictions (vote ties, mean of raw activations, fraction) and agreement rate (eq. 7)."""

import pytest
import torch

from superneurons.errors import DataError
from superneurons.inference.aggregation import (
    aggregate,
    agreement_rate,
    fraction,
    sn_votes,
    vote,
)


def mean(acts, alpha=0.0, rule=None):
    """The `mean` aggregation's answers."""
    return aggregate(acts, "mean", alpha, rule)[0]


def test_vote_majority_and_documented_tie_rule():
    votes = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 0, 1]], dtype=torch.bool)
    assert vote(votes).tolist() == [1, 0, 1]
    ties = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=torch.bool)
    assert vote(ties).tolist() == [0, 0, 1, 0]  # a tie answers "no"
    four = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    assert vote(four).tolist() == [0, 1]


def test_mean_thresholds_the_mean_raw_activation_and_differs_from_vote():
    acts = torch.tensor([[-0.1, -0.2, 5.0],   # one strong yes outweighs two weak no
                         [0.1, 0.2, -5.0],    # two weak yes lose to one strong no
                         [1.0, 2.0, 3.0]])
    assert mean(acts).tolist() == [1, 0, 1]
    assert vote(sn_votes(acts)).tolist() == [0, 1, 1]
    assert mean(acts, alpha=2.5).tolist() == [0, 0, 0]  # mean(H) > alpha
    assert mean(acts, alpha=1.55).tolist() == [1, 0, 1]  # row 0: 4.7 / 3 > 1.55
    assert mean(acts, alpha=1.6).tolist() == [0, 0, 1]


def test_per_neuron_alpha_and_flipped_rule():
    acts = torch.tensor([[0.5, -1.0], [2.0, 1.0]])
    alpha = torch.tensor([1.0, 0.0])
    rule = torch.tensor([1, -1], dtype=torch.int8)
    assert sn_votes(acts, alpha, rule).tolist() == [[False, True], [True, False]]
    # mean_k rule_k * (H - alpha_k): row 0: (-0.5 + 1.0) / 2 > 0; row 1: (1.0 - 1.0) / 2 = 0 -> no
    assert mean(acts, alpha, rule).tolist() == [1, 0]


def test_fraction_and_aggregate():
    acts = torch.tensor([[1.0, -1.0, 2.0, 3.0], [-1.0, -2.0, 1.0, -3.0]])
    assert fraction(sn_votes(acts)).tolist() == [0.75, 0.25]
    preds, scores = aggregate(acts, "fraction")
    assert preds.tolist() == [1, 0] and scores.tolist() == [0.75, 0.25]
    preds, scores = aggregate(acts, "mean")
    assert preds.tolist() == [1, 0] and scores.tolist() == pytest.approx([1.25, -1.25])
    with pytest.raises(DataError, match="mean, vote, fraction"):
        aggregate(acts, "max")
    with pytest.raises(DataError, match="K = 0"):
        vote(torch.zeros(3, 0, dtype=torch.bool))


def test_agreement_rate_eq7():
    sn = torch.tensor([[1, 1], [0, 1], [0, 0]])
    model = torch.tensor([1, 1, 1])
    assert agreement_rate(sn, model) == pytest.approx(3 / 6)
    assert agreement_rate(torch.tensor([1, 0, 0]), model) == pytest.approx(1 / 3)
    assert agreement_rate(sn, torch.tensor([-1, -1, -1])) == 0.0  # unparsed never agrees
    with pytest.raises(DataError, match="share N"):
        agreement_rate(sn, torch.tensor([1, 0]))


def test_sweep_agreement_at_given_snts_matches_agreement_rate_of_each_set():
    """AR@SNt (Fig. 4) comes from the SNt sweep: each row's `ar` is eq. 7 over the SNs with score > SNt."""
    from superneurons.scoring.neurons import probe_neurons
    from superneurons.selection import snt_sweep

    g = torch.Generator().manual_seed(0)
    y = torch.tensor([1, 0] * 20)
    acts = torch.randn(40, 1, 6, generator=g) + torch.linspace(2.0, 0.0, 6) * (2 * y[:, None, None] - 1)
    model = (torch.rand(40, generator=g) > 0.5).long()
    probe = probe_neurons(acts, y, keep_metric="accuracy", keep_within=1.0)
    scores = probe.scores["accuracy"][0]
    snts = [float(scores.max()) - 0.05, float(scores.median()), 0.0, 1.0]
    rows = snt_sweep(probe, snts=snts, model_preds=model)
    for row in rows[:3]:
        sel = scores > row["snt"]
        assert row["k"] == int(sel.sum()) > 0
        assert row["ar"] == pytest.approx(agreement_rate(sn_votes(acts[:, 0, sel]).long(), model))
    assert rows[3]["k"] == 0 and "ar" not in rows[3]
