"""Aggregation of SN predictions (vote ties, mean of raw activations, fraction) and agreement rate (eq. 7)."""

import pytest
import torch

from superneurons.aggregation import (
    aggregate,
    agreement_by_snt,
    agreement_rate,
    fraction,
    mean,
    sn_votes,
    vote,
)
from superneurons.errors import DataError


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


def test_agreement_by_snt_matches_agreement_rate_of_each_set():
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(40, 6, generator=g)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.55, 0.5], dtype=torch.float64)
    model = (torch.rand(40, generator=g) > 0.5).long()
    rows = agreement_by_snt(acts, scores, model, [0.85, 0.65, 0.5, 0.95])
    for row in rows[:3]:
        sel = scores > row["snt"]
        assert row["k"] == int(sel.sum())
        assert row["ar"] == pytest.approx(agreement_rate(sn_votes(acts[:, sel]).long(), model))
    assert rows[3] == {"snt": 0.95, "k": 0, "ar": None}
