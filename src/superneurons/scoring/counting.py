"""Exact confusion counts of the rule `H > alpha` for every neuron, in one pass, as tensor work.

Only two counts per neuron are needed at one threshold: predicted "yes" and true positives; FP, FN
and TN follow from the class totals (`Counter.confusion`). `Counter.count_many` gets them for K
thresholds at once (an alpha sweep, per-neuron candidates) from one read of the activations.

How it is fast (measured on a 2-core AVX-512 CPU; `benchmarks/scoring_scale.py` prints the table):
- rows are taken in label order (positives, then negatives) into a tile that stays in cache, so one
  pass yields both counts;
- floats are compared as the integers of their bit patterns, in the integer dtype of their width
  (fp16/bf16 as int16): torch vectorises a comparison whose output has its input's dtype (0.05
  ns/value on 1 thread) but not one into bool (0.5-0.7 ns); fp16 into fp16 costs 0.1 ns and an
  upcast to fp32 0.12 ns;
- the 0/1 results are summed as int64 words that each hold 4 (int16) or 2 (int32) counters, so a
  column sum reads the tile once and never carries between counters (a tile has < 2^15 rows);
- column spans run in Python threads with torch's intra-op threads off (`run_split`).

Exactness: `alpha` is rounded down to the activations' dtype (`round_down_threshold`), which gives
the same decision as comparing the stored value with the real-valued alpha; -0 and +0 are equal;
ties (a value equal to the threshold) are "no". A NaN activation is never above a threshold, as
`x > thr` in IEEE arithmetic: the paper rule says "no" for it, and the flipped rule, counted as the
complement of the paper rule, "yes". The bit-pattern comparison would put a NaN with a clear sign bit above every threshold,
so tiles holding one are corrected (found by their maximum bit pattern; capture never stores NaN).
The code is device-generic: tensors on a GPU are counted there, without a copy to the host.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch
from torch import Tensor

from superneurons.errors import DataError

#: integer dtype of the same width, and the bit pattern of +inf (a larger pattern is a NaN)
_BITS: dict[torch.dtype, tuple[torch.dtype, int]] = {
    torch.float16: (torch.int16, 0x7C00), torch.bfloat16: (torch.int16, 0x7F80),
    torch.float32: (torch.int32, 0x7F800000), torch.float64: (torch.int64, 0x7FF0000000000000)}
_CPU_TILE = 1 << 21      # values per tile on CPU (4 MiB of fp16 + 4 MiB of 0/1 results: in the L3 cache)
_CPU_RESULTS = 1 << 21   # 0/1 results of all thresholds for one tile (4 MiB as int16)
_GPU_TILE = 1 << 27      # on a GPU a tile is simply a large chunk
_ROWS = 64               # rows per tile when the columns allow (long contiguous reads of each row)
_MAX_ROWS = (1 << 15) - 1  # a 16-bit counter must not reach 2^15 (its sign bit)


def round_down_threshold(alpha: float | Tensor, dtype: torch.dtype) -> Tensor:
    """`alpha` as the largest value of `dtype` that is <= alpha.

    For x of that dtype, `x > round_down_threshold(alpha)` is exactly `x > alpha` (real-valued),
    so comparing fp16 activations needs no upcast. A NaN stays NaN.
    """
    a = torch.as_tensor(alpha, dtype=torch.float64)
    a_d = a.to(dtype)
    too_high = a_d.to(torch.float64) > a
    if bool(too_high.any()):
        a_d = torch.where(too_high, torch.nextafter(a_d, torch.full_like(a_d, -math.inf)), a_d)
    return a_d


def float_bits(t: Tensor) -> Tensor:
    """Bit patterns of a float tensor as the signed integers of its width (-0 made +0)."""
    return torch.where(t == 0, torch.zeros_like(t), t).contiguous().view(_BITS[t.dtype][0])


def sortable_keys(bits: Tensor) -> Tensor:
    """Integers that sort like the floats whose `bits` they are (negative magnitudes reversed).

    The map is its own inverse: `sortable_keys(sortable_keys(b))` is `b`.

    A NaN with the sign bit set sorts below -inf (never above a threshold), one without it above
    +inf (corrected by the caller)."""
    width = bits.element_size() * 8
    return bits ^ ((bits >> (width - 1)) & ((1 << (width - 1)) - 1))


def _colsum(b: Tensor) -> Tensor:
    """Column sums over dim -2 of 0/1 integers `[..., r, w]` (r < 2^15), as int64-addable counts."""
    per = 8 // b.element_size()
    if per > 1 and b.shape[-1] % per == 0 and b.is_contiguous():
        return b.view(torch.int64).sum(-2).view(b.dtype)  # `per` counters per word, no carries
    return b.sum(-2)


def greater_than(x: Tensor, thr: Tensor, out: Tensor) -> Tensor:
    """`out = x > thr` (bool) for `thr` already in x's dtype (see `round_down_threshold`); NaN is False."""
    tb = float_bits(thr) if x.dtype in _BITS else None
    if tb is not None and x.stride(-1) == 1 and bool((tb >= 0).all()):
        xb = x.view(_BITS[x.dtype][0])
        torch.gt(xb, tb, out=out)
        if bool(xb.max() > _BITS[x.dtype][1]):  # a NaN with a clear sign bit compared as above
            out &= ~torch.isnan(x)
        return out
    return torch.gt(x, thr, out=out)


def column_counts(b: Tensor) -> Tensor:
    """Number of True along dim 0 of a bool `[n, ...]` tensor, int64 `[...]`."""
    b8 = b.reshape(b.shape[0], -1).view(torch.uint8)
    total = torch.zeros(b8.shape[1], dtype=torch.int64, device=b.device)
    for lo in range(0, b8.shape[0], 255):  # 8-bit counters, 8 per word
        part = b8[lo:lo + 255]
        if part.shape[1] % 8 == 0:
            total += part.contiguous().view(torch.int64).sum(0).view(torch.uint8)
        else:
            total += part.sum(0)
    return total.view(b.shape[1:])


_SECTION = threading.Lock()
_section_depth = 0
_section_threads = 1


@contextmanager
def _own_threads() -> Iterator[int]:
    """Torch's intra-op threads set to 1 while any counting runs (nesting-safe); yields the number before."""
    global _section_depth, _section_threads
    with _SECTION:
        if _section_depth == 0:
            _section_threads = torch.get_num_threads()
            torch.set_num_threads(1)
        _section_depth += 1
        threads = _section_threads
    try:
        yield threads
    finally:
        with _SECTION:
            _section_depth -= 1
            if _section_depth == 0:
                torch.set_num_threads(_section_threads)


def _cpu_threads() -> int:
    """The threads `run_split` will use: torch's intra-op threads, as they were outside any counting section."""
    with _SECTION:
        return _section_threads if _section_depth else torch.get_num_threads()


def run_split(fn: Callable[[int, int], None], m: int, step: int, device: torch.device) -> None:
    """Call `fn(lo, hi)` on column spans of [0, m) (multiples of `step`), one Python thread each.

    On the CPU there are as many spans as torch had intra-op threads, and each thread runs torch
    ops one after another on its own columns, with intra-op threads set to 1 meanwhile (restored
    after). On a shared CPU this is far faster than intra-op parallelism, whose every op waits for
    all its threads (measured on 2 cores under load 9: 0.12 s against 1.0 s wall for 4 layers x
    4096 x 3000, and 6x less CPU time). On a GPU, one span.
    """
    if device.type != "cpu":
        fn(0, m)
        return
    with _own_threads() as threads:
        tiles = -(-m // step)
        threads = max(1, min(threads, tiles))
        bounds = [min(m, (tiles * i // threads) * step) for i in range(threads + 1)]
        spans = [(lo, hi) for lo, hi in zip(bounds, bounds[1:], strict=False) if hi > lo]
        if len(spans) == 1:
            fn(*spans[0])
            return
        with ThreadPoolExecutor(len(spans)) as ex:
            for f in [ex.submit(fn, lo, hi) for lo, hi in spans]:
                f.result()


class _Thresholds:
    """K thresholds (scalars `[K]` or per neuron `[K, m]`), prepared for bit-pattern comparisons.

    Scalars with a clear sign bit compare the patterns as they are; negative scalars compare them
    with the sign bit flipped (`x > t` for t < 0 is `bits ^ sign < t_bits ^ sign`), each group a
    contiguous run of `order`; per-neuron thresholds compare monotone keys (`sortable_keys`), three
    more passes over a tile. A NaN threshold is +inf (nothing is above either).
    """

    def __init__(self, thr: Tensor, m: int):
        thr = torch.where(torch.isnan(thr), torch.full_like(thr, math.inf), thr)
        self.k = thr.shape[0]
        b = float_bits(thr)
        self.sign = torch.iinfo(b.dtype).min
        self.per_neuron = thr.dim() == 2
        if self.per_neuron:
            if thr.shape[1] != m:
                raise DataError(f"per-neuron thresholds have {thr.shape[1]} columns for {m} neurons")
            self.keys, self.order, self.num_pos = sortable_keys(b), None, 0
            return
        nonneg = b >= 0
        self.num_pos = int(nonneg.sum())
        self.order = torch.argsort((~nonneg).to(torch.int8), stable=True)  # thresholds >= 0 first
        ob = b[self.order]
        self.pos_bits = ob[:self.num_pos].view(-1, 1, 1)
        self.neg_bits = (ob[self.num_pos:] ^ self.sign).view(-1, 1, 1)

    def compare(self, tile: Tensor, c0: int, c1: int, out: Tensor, tmp: Tensor) -> None:
        """`out[k] = tile > threshold order[k]` as 0/1 in the tile's dtype; `tmp` is scratch like tile."""
        if self.per_neuron:
            torch.gt(sortable_keys(tile).unsqueeze(0), self.keys[:, None, c0:c1], out=out)
            return
        p = self.num_pos
        if p:
            torch.gt(tile.unsqueeze(0), self.pos_bits, out=out[:p])
        if p < self.k:
            torch.bitwise_xor(tile, self.sign, out=tmp)
            torch.lt(tmp.unsqueeze(0), self.neg_bits, out=out[p:])

    def restore(self, counts: Tensor) -> Tensor:
        """Rows of `counts [.., K, m]` back in the caller's threshold order."""
        if self.order is None:
            return counts
        return counts.index_select(-2, torch.argsort(self.order))


class Counter:
    """Counts predicted-yes and true-positive per neuron for chunks of `[N, ...]` activations.

    Built once per label vector (on the activations' device); `count` / `count_many` take a chunk.
    """

    def __init__(self, y: Tensor, device: torch.device | str | None = None):
        y = y.reshape(-1)
        self.n = y.numel()
        self.num_pos = int(y.sum())
        self.num_neg = self.n - self.num_pos
        dev = torch.device(device) if device is not None else y.device
        self.rows = ((y == 1).nonzero().squeeze(1).to(dev), (y != 1).nonzero().squeeze(1).to(dev))

    def count(self, x: Tensor, thr: Tensor) -> tuple[Tensor, Tensor]:
        """(predicted yes, true positives) per neuron for `x > thr`, int64 `x.shape[1:]`.

        `thr` is a scalar or a per-neuron tensor of shape `x.shape[1:]` (rounded down to x's dtype).
        """
        t = thr.reshape(1) if thr.dim() == 0 else thr.reshape(1, -1)
        pred_yes, tp = self.count_many(x, t)
        return pred_yes[0], tp[0]

    def count_many(self, x: Tensor, thrs: Tensor) -> tuple[Tensor, Tensor]:
        """(predicted yes, true positives), int64 `[K, *x.shape[1:]]`, for K thresholds in one read.

        `thrs` is `[K]` (one threshold per row of the result) or `[K, *x.shape[1:]]` (per neuron),
        any float dtype: each is rounded down to x's dtype (`round_down_threshold`).
        """
        if x.shape[0] != self.n:
            raise DataError(f"activations have {x.shape[0]} rows for {self.n} labels")
        if x.dtype not in _BITS:
            raise DataError(f"activations must be float16, bfloat16, float32 or float64, got {x.dtype}")
        shape, n = tuple(x.shape[1:]), x.shape[0]
        x2 = x.reshape(n, -1)
        m = x2.shape[1]
        t = round_down_threshold(thrs, x.dtype).to(x.device)
        thr = _Thresholds(t.reshape(t.shape[0], -1) if t.dim() > 1 else t, m)
        counts = torch.zeros(2, thr.k, m, dtype=torch.int64, device=x.device)  # (positives, negatives)
        gpu = x.device.type != "cpu"
        budget = max(1, (_GPU_TILE if gpu else _CPU_RESULTS) // thr.k)
        budget = budget if gpu else min(_CPU_TILE, budget)
        width = min(m, max(64, budget // min(max(n, 1), _ROWS)))
        if not gpu:  # at least one column span per thread (a chunk narrower than one tile ran on one core)
            width = min(width, max(64, -(-m // _cpu_threads())))
        rows = max(1, min(_MAX_ROWS, budget // width))

        def part(lo: int, hi: int) -> None:  # columns [lo, hi) with buffers of its own
            src = torch.empty(rows * width, dtype=x.dtype, device=x.device)
            tmp = torch.empty(rows * width, dtype=_BITS[x.dtype][0], device=x.device)
            res = torch.empty(thr.k * rows * width, dtype=_BITS[x.dtype][0], device=x.device)
            for c0 in range(lo, hi, width):
                c1 = min(hi, c0 + width)
                for cls, idx in enumerate(self.rows):
                    for r0 in range(0, idx.numel(), rows):
                        self._tile(x2, idx[r0:r0 + rows], c0, c1, thr, counts[cls], (src, tmp, res))

        run_split(part, m, width, x.device)
        counts = thr.restore(counts)
        tp = counts[0]
        return (tp + counts[1]).view(thr.k, *shape), tp.view(thr.k, *shape)

    @staticmethod
    def _tile(x2: Tensor, idx: Tensor, c0: int, c1: int, thr: _Thresholds, counts: Tensor,
              bufs: tuple[Tensor, Tensor, Tensor]) -> None:
        """Add the counts of rows `idx`, columns [c0, c1) to `counts [K, m]`: copy, compare, sum."""
        src, tmp, res = bufs
        bits_dtype, inf_bits = _BITS[x2.dtype]
        r, w = idx.numel(), c1 - c0
        tile = torch.index_select(x2[:, c0:c1], 0, idx, out=src[:r * w].view(r, w)).view(bits_dtype)
        out = res[:thr.k * r * w].view(thr.k, r, w)
        thr.compare(tile, c0, c1, out, tmp[:r * w].view(r, w))
        counts[:, c0:c1] += _colsum(out)
        if bool(tile.max() > inf_bits):  # NaN with a clear sign bit: compared as above, it is not
            counts[:, c0:c1] -= _colsum(torch.gt(tile, inf_bits).to(bits_dtype)).unsqueeze(0)

    def confusion(self, pred_yes: Tensor, tp: Tensor, flipped: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(TP, FP, FN, TN) of the paper rule, or of the flipped rule (`x <= thr` means yes)."""
        fp = pred_yes - tp
        fn = self.num_pos - tp
        tn = self.num_neg - fp
        if flipped:  # yes iff not above: every "no" of the paper rule becomes "yes"
            return fn, tn, tp, fp
        return tp, fp, fn, tn


def quantile_thresholds(x: Tensor, quantiles: list[float] | tuple[float, ...]) -> Tensor:
    """[Q, l, D] per-neuron thresholds: each neuron's own activation quantiles (actual values; NaN as -inf)."""
    n = x.shape[0]
    x = torch.where(torch.isnan(x), torch.full_like(x, -math.inf), x)
    idx = torch.tensor([min(n - 1, max(0, round(q * (n - 1)))) for q in quantiles], device=x.device)
    return x.sort(dim=0).values.index_select(0, idx)
