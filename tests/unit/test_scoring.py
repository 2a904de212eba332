"""Per-neuron scoring on synthetic tensors whose answer is known by construction."""

import math

import pytest
import torch

from superneurons.constants import METRICS
from superneurons.errors import DataError
from superneurons.scoring.counting import round_down_threshold
from superneurons.scoring.neurons import alpha_sweep, probe_neurons, score_neurons


def _labels(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    y = torch.zeros(n, dtype=torch.long)
    y[torch.randperm(n, generator=g)[: n // 2]] = 1
    return y


def _reference(acts: torch.Tensor, y: torch.Tensor, alpha: float) -> dict[str, torch.Tensor]:
    """Straightforward per-neuron loop in Python floats (eqs. 8-11, undefined -> 0)."""
    n, n_layers, d = acts.shape
    out = {m: torch.zeros(n_layers, d, dtype=torch.float64) for m in METRICS}
    for layer in range(n_layers):
        for j in range(d):
            tp = fp = fn = tn = 0
            for i in range(n):
                pred = float(acts[i, layer, j]) > alpha
                if pred and y[i] == 1:
                    tp += 1
                elif pred:
                    fp += 1
                elif y[i] == 1:
                    fn += 1
                else:
                    tn += 1
            p = tp / (tp + fp) if tp + fp else 0.0
            r = tp / (tp + fn) if tp + fn else 0.0
            out["accuracy"][layer, j] = (tp + tn) / n
            out["precision"][layer, j] = p
            out["recall"][layer, j] = r
            out["f1"][layer, j] = 2 * p * r / (p + r) if p + r else 0.0
    return out


class _Store:
    """Duck-typed activation store: only what scoring needs (iter_layer_chunks, layers, labels...)."""

    def __init__(self, acts: torch.Tensor, labels: torch.Tensor, layers: list[int] | None = None, chunk: int = 2):
        self.acts, self.labels = acts, labels
        self.layers = layers or list(range(acts.shape[1]))
        self.num_samples, self.hidden_size = acts.shape[0], acts.shape[2]
        self.reads = 0

    def iter_layer_chunks(self, chunk_layers: int):
        for i in range(0, len(self.layers), chunk_layers):
            self.reads += 1
            yield self.layers[i:i + chunk_layers], self.acts[:, i:i + chunk_layers].clone()


def test_planted_neuron_is_found_with_score_one():
    y = _labels(64)
    acts = torch.randn(64, 3, 16)
    acts[:, 2, 7] = torch.where(y == 1, 1.0, -1.0) * torch.rand(64).add(0.1)
    s = score_neurons(acts, y)
    for m in METRICS:
        assert float(s[m][2, 7]) == 1.0
    flat = int(s["accuracy"].reshape(-1).argmax())
    assert divmod(flat, 16) == (2, 7)
    assert s.layers == [0, 1, 2] and s.num_samples == 64


def test_anti_correlated_neuron_needs_polarity():
    y = _labels(64)
    acts = torch.randn(64, 2, 8) * 0.1
    acts[:, 1, 3] = torch.where(y == 1, -1.0, 1.0)
    plain = score_neurons(acts, y)
    assert float(plain["accuracy"][1, 3]) == 0.0
    assert divmod(int(plain["accuracy"].reshape(-1).argmax()), 8) != (1, 3)
    both = score_neurons(acts, y, polarity="both")
    assert float(both["accuracy"][1, 3]) == 1.0 and int(both["rule"][1, 3]) == -1
    assert divmod(int(both["accuracy"].reshape(-1).argmax()), 8) == (1, 3)
    assert (both["accuracy"] >= plain["accuracy"]).all()  # flipping only ever helps in-sample


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("alpha", [0.0, 0.1, -0.3, 0.5])
def test_exact_match_with_per_neuron_reference(dtype, alpha):
    y = _labels(37, seed=3)
    acts = torch.randn(37, 3, 5).to(dtype)
    acts[:4, 0, 0] = 0.5  # values equal to a representable alpha are "no"
    got = score_neurons(acts, y, alpha=alpha)
    ref = _reference(acts, y, alpha)
    for m in METRICS:
        assert torch.equal(got[m], ref[m]), m


def test_round_down_threshold_matches_real_comparison():
    x = torch.linspace(-1, 1, 4001).half()
    for alpha in (0.1, 1 / 3, -0.7, 1e6, -1e6):
        thr = round_down_threshold(alpha, torch.float16)
        assert torch.equal(x > thr, x.double() > alpha)


def test_chunked_equals_unchunked_and_store_equals_tensor():
    y = _labels(50, seed=1)
    acts = torch.randn(50, 5, 6).half()
    full = score_neurons(acts, y, chunk_layers=5, return_counts=True, polarity="both")
    for chunk in (1, 2, 3):
        part = score_neurons(acts, y, chunk_layers=chunk, return_counts=True, polarity="both")
        assert part.keys() == full.keys()
        for k in full:
            assert torch.equal(part[k], full[k]), (chunk, k)
    store = _Store(acts, y, layers=[0, 1, 2, 3, 4])
    from_store = score_neurons(store, chunk_layers=2, return_counts=True, polarity="both")  # labels from the store
    for k in full:
        assert torch.equal(from_store[k], full[k]), k


def test_store_layer_subset_and_max_layer_stop_reading():
    y = _labels(20)
    acts = torch.randn(20, 4, 3)
    store = _Store(acts, y, layers=[2, 5, 9, 11])
    s = score_neurons(store, max_layer=5, chunk_layers=1)
    assert s.layers == [2, 5] and s["accuracy"].shape == (2, 3)
    assert store.reads == 2  # layers 9 and 11 were never read
    assert torch.equal(s["accuracy"], score_neurons(acts[:, :2], y)["accuracy"])


def test_edge_cases_give_defined_numbers():
    acts = torch.randn(30, 2, 4)
    for y in (torch.ones(30, dtype=torch.long), torch.zeros(30, dtype=torch.long)):
        s = score_neurons(acts, y, return_counts=True)
        for m in METRICS:
            assert torch.isfinite(s[m]).all()
        if y[0] == 0:
            assert (s["recall"] == 0).all() and (s["f1"] == 0).all()
    y = _labels(30)
    above_all = score_neurons(acts, y, alpha=float(acts.max()) + 1)  # everyone answers no
    assert (above_all["accuracy"] == 0.5).all()
    assert (above_all["precision"] == 0).all() and (above_all["recall"] == 0).all() and (above_all["f1"] == 0).all()
    below_all = score_neurons(acts, y, alpha=float(acts.min()) - 1)  # everyone answers yes
    assert (below_all["recall"] == 1).all() and (below_all["precision"] == 0.5).all()


def _split_data(seed: int, n: int = 400):
    g = torch.Generator().manual_seed(seed)
    y = _labels(n, seed=seed)
    acts = torch.randn(n, 2, 32, generator=g)
    sign = torch.where(y == 1, 1.0, -1.0)
    # layer 0 neuron 5: informative around 1.5, not 0 (all values > 0: alpha=0 says "yes" to all)
    acts[:, 0, 5] = 1.5 + sign * (0.2 + torch.rand(n, generator=g)) + 0.3 * torch.randn(n, generator=g)
    # layer 1 neuron 9: anti-correlated and noisy
    acts[:, 1, 9] = -sign + 0.7 * torch.randn(n, generator=g)
    return acts, y


def test_per_neuron_alpha_generalises_to_held_out_data():
    train, y_train = _split_data(0)
    test, y_test = _split_data(1)
    fitted = score_neurons(train, y_train, per_neuron_alpha=True)
    assert 1.0 < float(fitted["alpha"][0, 5]) < 2.0
    assert float(score_neurons(train, y_train)["accuracy"][0, 5]) < 0.6  # alpha=0: (almost) always yes
    held = score_neurons(test, y_test, alpha=fitted["alpha"], rule=fitted["rule"])
    assert float(held["accuracy"][0, 5]) > 0.9
    # the fitted thresholds of pure-noise neurons do not carry over: the in-sample gain is overfit
    noise = torch.ones(2, 32, dtype=torch.bool)
    noise[0, 5] = noise[1, 9] = False
    in_sample, held_out = float(fitted["accuracy"][noise].mean()), float(held["accuracy"][noise].mean())
    assert in_sample > held_out + 0.015
    assert abs(held_out - 0.5) < 0.015


def test_polarity_generalises_to_held_out_data():
    train, y_train = _split_data(2)
    test, y_test = _split_data(3)
    fitted = score_neurons(train, y_train, polarity="both")
    assert int(fitted["rule"][1, 9]) == -1
    held = score_neurons(test, y_test, rule=fitted["rule"])
    assert float(held["accuracy"][1, 9]) > 0.85
    noise = torch.ones(2, 32, dtype=torch.bool)
    noise[0, 5] = noise[1, 9] = False
    assert float(fitted["accuracy"][noise].min()) >= 0.5  # in-sample, a flip always reaches 0.5
    in_sample, held_out = float(fitted["accuracy"][noise].mean()), float(held["accuracy"][noise].mean())
    assert in_sample > held_out + 0.01
    assert abs(held_out - 0.5) < 0.015


def test_alpha_sweep_rows():
    y = _labels(60)
    acts = torch.randn(60, 2, 4) * 0.2
    acts[:, 1, 2] = torch.where(y == 1, 0.5, -0.5)
    rows = alpha_sweep(acts, y, alphas=[-3.0, 0.0, 3.0])
    assert [r["alpha"] for r in rows] == [-3.0, 0.0, 3.0]
    assert rows[1] == {"alpha": 0.0, "best": 1.0, "layer": 1, "neuron": 2}
    assert rows[0]["best"] == rows[2]["best"] == 0.5  # every neuron answers the same


def test_probe_pool_holds_every_near_best_neuron():
    y = _labels(100)
    acts = torch.randn(100, 4, 8)
    acts[:, 3, 1] = torch.where(y == 1, 1.0, -1.0) + 0.8 * torch.randn(100)
    probe = probe_neurons(acts, y, keep_metric="accuracy", keep_within=0.1, chunk_layers=1)
    acc = probe.scores["accuracy"].reshape(-1)
    near = (acc > float(acc.max()) - 0.1 - 1e-9).nonzero().squeeze(1)
    expected = near[torch.sort(-acc[near], stable=True).indices]  # best first, ties by position
    assert torch.equal(probe.pool_index, expected)
    assert torch.equal(probe.pool_scores, acc[expected])
    assert torch.equal(probe.pool_acts, acts.reshape(100, -1)[:, expected].T)
    assert math.isclose(probe.pool_floor, float(acc.max()) - 0.1, abs_tol=1e-8)


def test_bad_inputs_raise_clear_errors():
    acts = torch.randn(10, 2, 3)
    y = _labels(10)
    with pytest.raises(DataError, match="labels for 10 samples"):
        score_neurons(acts, y[:5])
    with pytest.raises(DataError, match="not 1 \\(yes\\) or 0"):
        score_neurons(acts, torch.full((10,), 2))
    with pytest.raises(DataError, match="valid names"):
        score_neurons(acts, y, metrics=("auc",))
    with pytest.raises(DataError, match=r"\[N, L, D\]"):
        score_neurons(acts[:, 0], y)
    with pytest.raises(DataError, match="polarity"):
        score_neurons(acts, y, polarity="negative")
    with pytest.raises(DataError, match="labels are missing"):
        score_neurons(acts)
