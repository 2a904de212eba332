"""Binary metrics on predictions: known values, undefined ratios are 0, unparsed answers count as wrong."""

import math

import pytest
import torch

from superneurons.errors import DataError
from superneurons.scoring.metrics import binary_metrics, confusion_counts, metrics_from_counts


def test_known_values():
    m = binary_metrics([1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 1, 0])
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 2)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["yes_ratio"] == pytest.approx(0.5)
    assert m["n"] == 6 and m["unparsed"] == 0


def test_undefined_ratios_are_zero_not_nan():
    always_no = binary_metrics([0, 0, 0, 0], [1, 0, 1, 0])
    assert always_no["precision"] == 0.0 and always_no["f1"] == 0.0 and always_no["yes_ratio"] == 0.0
    no_positives = binary_metrics([1, 0, 1], [0, 0, 0])
    assert no_positives["recall"] == 0.0 and no_positives["f1"] == 0.0
    assert no_positives["accuracy"] == pytest.approx(1 / 3)
    for m in (always_no, no_positives):
        assert not any(isinstance(v, float) and math.isnan(v) for v in m.values())


def test_unparsed_answers_are_never_correct():
    m = binary_metrics([1, -1, -1, 0], [1, 1, 0, 0])
    assert m["unparsed"] == 2
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["fn"] == 2 - 1  # the unparsed positive
    assert m["recall"] == pytest.approx(0.5)
    assert m["yes_ratio"] == pytest.approx(0.25)


def test_counts_tensor_shapes_and_formula():
    tp, fp, fn, tn = (torch.tensor([[3, 0], [0, 1]]), torch.tensor([[1, 0], [2, 0]]),
                      torch.tensor([[1, 4], [0, 0]]), torch.tensor([[5, 6], [8, 9]]))
    m = metrics_from_counts(tp, fp, fn, tn)
    assert m["accuracy"].dtype == torch.float64 and m["accuracy"].shape == (2, 2)
    assert m["precision"][0, 0] == 3 / 4 and m["precision"][0, 1] == 0.0 and m["recall"][1, 0] == 0.0
    assert m["f1"][0, 0] == 2 * 0.75 * 0.75 / 1.5
    assert m["f1"][1, 1] == 1.0


def test_bad_inputs_raise():
    with pytest.raises(DataError, match="not 1, 0 or -1"):
        confusion_counts([2, 0], [1, 0])
    with pytest.raises(DataError, match="entries"):
        binary_metrics([1, 0], [1])
    with pytest.raises(DataError, match="integer"):
        binary_metrics(torch.tensor([0.7]), [1])
    with pytest.raises(DataError, match="no predictions"):
        binary_metrics([], [])
