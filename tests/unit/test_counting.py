"""The single-pass counter, the K-threshold sweep and the exact best cuts against per-neuron Python loops."""

import math

import pytest
import torch

import superneurons.scoring.counting as counting
from superneurons.config import QUANTILES
from superneurons.scoring.counting import Counter, column_counts, greater_than, round_down_threshold
from superneurons.scoring.metrics import metrics_from_counts
from superneurons.scoring.neurons import alpha_sweep, score_neurons
from superneurons.scoring.reference import reference_counts
from superneurons.scoring.streaming import prefetched
from superneurons.scoring.thresholds import best_cuts

NAN, INF = math.nan, math.inf
ALPHAS = [0.0, -0.0, 0.1, -1 / 3, 0.5, -0.5, 1e-6, 1e9, -1e9, INF, -INF]


def _nasty(n: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random [n, 2, 37] activations with ties at alphas, NaNs of both signs, signed zeros, infinities."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, 37, generator=g).to(dtype)
    x[:7, 0, 0] = 0.5                                  # ties at a representable alpha
    x[7:12, 0, 0] = torch.tensor(0.1).to(dtype)        # the stored value nearest an unrepresentable alpha
    x[:6, 0, 1] = NAN
    x[6:9, 0, 1] = -torch.tensor(NAN)                  # a NaN with the sign bit set
    x[:4, 1, 2], x[4:8, 1, 2] = 0.0, -0.0
    x[:3, 1, 3], x[3:6, 1, 3] = INF, -INF
    x[:, 1, 4] = NAN                                   # a neuron of NaNs only
    y = (torch.rand(n, generator=g) > 0.45).long()
    return x, y


def _python_counts(x: torch.Tensor, y: torch.Tensor, thr) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent reference: one neuron at a time, Python floats, `value > threshold` (NaN: False)."""
    flat = x.reshape(x.shape[0], -1)
    t = thr.reshape(-1).tolist() if isinstance(thr, torch.Tensor) else [thr] * flat.shape[1]
    pred, tp = [], []
    for j in range(flat.shape[1]):
        above = [float(v) > t[j] for v in flat[:, j].tolist()]
        pred.append(sum(above))
        tp.append(sum(a and int(lab) == 1 for a, lab in zip(above, y.tolist(), strict=True)))
    return torch.tensor(pred).view(x.shape[1:]), torch.tensor(tp).view(x.shape[1:])


@pytest.fixture(params=["one tile", "tiny tiles"])
def tiles(request, monkeypatch):
    """The default tiles, or tiles of a few rows and 64 columns (many row blocks, column tiles, threads)."""
    if request.param == "tiny tiles":
        monkeypatch.setattr(counting, "_CPU_TILE", 64 * 7)
        monkeypatch.setattr(counting, "_CPU_RESULTS", 64 * 7)
    return request.param


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_one_alpha_and_a_sweep_match_the_per_neuron_reference(dtype, tiles):
    x, y = _nasty(61, dtype)
    counter = Counter(y)
    threads = torch.get_num_threads()
    pred, tp = counter.count_many(x, torch.tensor(ALPHAS, dtype=torch.float64))  # one read, every alpha
    assert torch.get_num_threads() == threads
    for k, a in enumerate(ALPHAS):
        ref = _python_counts(x, y, a)  # real-valued alpha: the rounding down must not change a decision
        one = counter.count(x, torch.tensor(a, dtype=torch.float64))
        for got in ((pred[k], tp[k]), one):
            assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1]), (dtype, a)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_per_neuron_thresholds_match_the_reference(dtype, tiles):
    x, y = _nasty(45, dtype, seed=1)
    g = torch.Generator().manual_seed(2)
    thr = torch.randn(3, 2, 37, generator=g).to(dtype)
    thr[0, 0, 0], thr[1, 1, 2], thr[2, 1, 3] = 0.5, -0.0, -INF  # ties, a signed zero, an infinity
    pred, tp = Counter(y).count_many(x, thr)
    for k in range(3):
        ref = _python_counts(x, y, thr[k].to(torch.float64))
        assert torch.equal(pred[k], ref[0]) and torch.equal(tp[k], ref[1]), k


def test_scores_and_alpha_sweep_use_the_same_counts():
    x, y = _nasty(80, torch.float16, seed=3)
    s = score_neurons(x, y, alpha=0.1, return_counts=True)
    pred, tp = _python_counts(x, y, 0.1)
    assert torch.equal(s["tp"], tp) and torch.equal(s["tp"] + s["fp"], pred)
    rows = alpha_sweep(x, y, alphas=ALPHAS[2:9], chunk_layers=1)
    for row, a in zip(rows, ALPHAS[2:9], strict=True):
        acc = score_neurons(x, y, alpha=a)["accuracy"].reshape(-1)
        flat = int(acc.argmax())
        assert row == {"alpha": a, "best": float(acc[flat]), "layer": flat // 37, "neuron": flat % 37}


def test_the_old_scorer_and_the_new_counter_agree():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(300, 3, 64, generator=g).half()
    y = (torch.rand(300, generator=g) > 0.5).long()
    for a in (0.0, 0.3, -0.7):
        assert all(torch.equal(p, q) for p, q in zip(reference_counts(x, y, a),
                                                      Counter(y).count(x, torch.tensor(a)), strict=True))


def test_greater_than_and_column_counts_agree_with_float_comparisons():
    x, _ = _nasty(300, torch.float16)
    for a in (0.0, 0.5, -0.5):
        thr = round_down_threshold(a, x.dtype)
        out = torch.empty(x.shape, dtype=torch.bool)
        assert torch.equal(greater_than(x, thr, out), x > thr)  # NaN of either sign: False
        assert torch.equal(column_counts(x > thr), (x > thr).sum(0))


def _brute_best(v: list[float], y: list[int], metric: str, both: bool) -> float:
    """Best metric over every threshold that changes a decision (below all, and at each value)."""
    best = -INF
    for t in [-INF] + sorted({a for a in v if not math.isnan(a)}):
        above = [a > t for a in v]
        for flip in ((False, True) if both else (False,)):
            pred = [a != flip for a in above]
            tp = sum(p and lab == 1 for p, lab in zip(pred, y, strict=True))
            fp = sum(p and lab == 0 for p, lab in zip(pred, y, strict=True))
            fn, tn = sum(y) - tp, len(y) - sum(y) - fp
            best = max(best, float(metrics_from_counts(tp, fp, fn, tn)[metric]))
    return best


@pytest.mark.parametrize("metric", ["accuracy", "f1"])
@pytest.mark.parametrize("both", [False, True])
def test_best_cuts_are_the_exact_optimum_and_reproduce_their_counts(metric, both):
    g = torch.Generator().manual_seed(5)
    x = (torch.randn(40, 1, 12, generator=g) * 4).round().half() / 4  # many ties
    x[:3, 0, 0] = NAN
    x[:, 0, 1] = 1.0                                                   # one value only
    y = (torch.rand(40, generator=g) > 0.5).long()
    (tp, fp, fn, tn), thr, rule = best_cuts(x, y, metric, both)
    got = metrics_from_counts(tp, fp, fn, tn)[metric]
    for j in range(12):
        assert math.isclose(float(got[0, j]), _brute_best(x[:, 0, j].tolist(), y.tolist(), metric, both))
    # the reported threshold and rule make exactly those counts on the same data
    rescored = score_neurons(x, y, alpha=thr, rule=rule, return_counts=True)
    for key, c in zip(("tp", "fp", "fn", "tn"), (tp, fp, fn, tn), strict=True):
        assert torch.equal(rescored[key], c), key


def _informative(seed: int, n: int, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) > 0.5).long()
    sign = torch.where(y == 1, 1.0, -1.0)[:, None]
    acts = centres + sign * 0.6 + torch.randn(n, centres.numel(), generator=g)
    return acts[:, None, :], y


def test_exact_cuts_are_at_least_as_good_as_quantiles_on_held_out_data():
    """64 neurons informative around different offsets: fitted on 300 samples, judged on 6000 others."""
    centres = torch.linspace(-2.5, 2.5, 64)
    train, y_train = _informative(0, 300, centres)
    test, y_test = _informative(1, 6000, centres)
    held = {}
    for name, q in (("exact", None), ("quantiles", QUANTILES)):
        fitted = score_neurons(train, y_train, per_neuron_alpha=True, quantiles=q)
        held[name] = score_neurons(test, y_test, alpha=fitted["alpha"], rule=fitted["rule"])["accuracy"]
    assert float(held["exact"].mean()) >= float(held["quantiles"].mean())
    assert float(held["exact"].mean()) > 0.68  # the Bayes accuracy of these neurons is 0.73


def test_prefetched_reads_ahead_passes_errors_and_stops_early():
    read = []

    def items(fail_at=None):
        for i in range(10):
            if i == fail_at:
                raise OSError("disk gone")
            read.append(i)
            yield i

    assert list(prefetched(items())) == list(range(10))
    with pytest.raises(OSError, match="disk gone"):
        list(prefetched(items(fail_at=3)))
    read.clear()
    gen = prefetched(items())
    assert next(gen) == 0
    gen.close()  # the reader stops: at most the items it was already holding were read
    assert len(read) <= 3


def test_concurrent_counts_restore_torch_threads(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(counting, "_CPU_TILE", 64 * 7)  # many tiles: every call splits its columns
    x, y = _nasty(50, torch.float16)
    before = torch.get_num_threads()
    counter = Counter(y)
    with ThreadPoolExecutor(3) as ex:
        results = list(ex.map(lambda a: counter.count(x, torch.tensor(a)), [0.0, 0.5, -0.5] * 2))
    assert torch.get_num_threads() == before
    for a, got in zip([0.0, 0.5, -0.5] * 2, results, strict=True):
        ref = _python_counts(x, y, a)
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])


def test_a_nan_alpha_is_refused():
    from superneurons.errors import DataError

    x, y = _nasty(20, torch.float16)
    with pytest.raises(DataError, match="alpha is NaN"):
        score_neurons(x, y, alpha=NAN)
    with pytest.raises(DataError, match="NaN"):
        alpha_sweep(x, y, alphas=[0.0, NAN])


def test_one_metric_equals_the_full_set():
    from superneurons.constants import METRICS
    from superneurons.scoring.metrics import metric_from_counts

    g = torch.Generator().manual_seed(6)
    tp, fp, fn, tn = (torch.randint(0, 4, (200,), generator=g) for _ in range(4))  # zeros: undefined ratios
    full = metrics_from_counts(tp, fp, fn, tn)
    for name in METRICS:
        assert torch.equal(metric_from_counts(name, tp, fp, fn, tn), full[name]), name


def test_a_chunk_narrower_than_one_tile_is_still_split_over_the_threads(monkeypatch):
    spans = []
    real = counting.run_split

    def recording(fn, m, step, device):
        spans.append(-(-m // step))
        real(fn, m, step, device)

    monkeypatch.setattr(counting, "run_split", recording)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x, y = _nasty(64, torch.float16)  # 64 rows x (a few hundred) columns: far below one CPU tile
        got = Counter(y).count(x, torch.tensor(0.0))
    finally:
        torch.set_num_threads(before)
    assert spans and spans[0] >= 2  # before the fix: one span, so one core did all the counting
    ref = _python_counts(x, y, 0.0)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
