"""The near-best neuron pool: activations of the neurons an SNt sweep can select, kept in the scoring pass.

An SNt sweep (`superneurons.selection.sweep`) evaluates SN sets with score > SNt for SNt values
down to `best - depth` on a grid of `step`; `Pool` keeps, during the one streamed scoring pass,
the activations of every neuron above that floor (which rises as better neurons are seen), so the
sweep needs no second read of the store.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from superneurons.errors import DataError

_EPS = 1e-9


def grid_units(step: float) -> int:
    """1 / step as an integer (100 for 1-point steps, 1000 for 0.1-point steps)."""
    units = round(1 / step) if step > 0 else 0
    if units < 1 or abs(units * step - 1) > 1e-6:
        raise DataError(f"step={step} must divide 1 (e.g. 0.01 = 1 point, 0.001 = 0.1 point)")
    return units


def lowest_grid_index(value: float, units: int) -> int:
    """The smallest j with j / units >= value."""
    j = math.ceil(value * units)
    while (j - 1) / units >= value:
        j -= 1
    while j / units < value:
        j += 1
    return j


class Pool:
    """Running set of neurons scoring above `above`, or within `within` of the best seen so far.

    Parts are kept as gathered ([N, m] per chunk) and only filtered again when more than half of
    what is held has fallen below the rising floor, and at the end (then made neuron-major).
    """

    def __init__(self, within: float, above: float | None, d: int, step: float | None = None):
        self.within, self.above, self.d = within, above, d
        self.units = None if step is None else grid_units(step)
        self.best = -math.inf
        self.parts: list[tuple[Tensor, Tensor, Tensor]] = []  # (flat index, values, acts [N, m])

    def floor(self) -> float:
        if self.above is not None:
            return self.above - _EPS
        if self.units is None:
            return self.best - self.within - _EPS
        return lowest_grid_index(self.best - self.within - _EPS, self.units) / self.units - _EPS

    def add(self, x: Tensor, row: int, vals: Tensor) -> None:
        self.best = max(self.best, float(vals.max()))
        floor = self.floor()
        flat = (vals.reshape(-1) > floor).nonzero().squeeze(1)
        if flat.numel():
            acts = columns(x.reshape(x.shape[0], -1), flat.to(x.device)).cpu()  # gathered where x is
            self.parts.append((row * self.d + flat, vals.reshape(-1)[flat], acts))
        held = sum(p[0].numel() for p in self.parts)
        alive = sum(int((p[1] > floor).sum()) for p in self.parts)
        if alive < held // 2:
            self._prune(floor)

    def _prune(self, floor: float) -> None:
        kept = []
        for idx, vals, a in self.parts:
            m = vals > floor
            if bool(m.all()):
                kept.append((idx, vals, a))
            elif bool(m.any()):
                keep = m.nonzero().squeeze(1)
                kept.append((idx[keep], vals[keep], columns(a, keep)))
        self.parts = kept

    def finish(self, n: int) -> tuple[Tensor, Tensor, Tensor, float]:
        """(flat index, acts [k, N], scores), best score first (stable: lower index first), and the floor."""
        floor = self.floor()
        if not self.parts:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, n), torch.zeros(0, dtype=torch.float64), floor
        idx = torch.cat([p[0] for p in self.parts])
        vals = torch.cat([p[1] for p in self.parts])
        keep = (vals > floor).nonzero().squeeze(1)
        keep = keep[torch.sort(-vals[keep], stable=True).indices]  # parts are in ascending index order
        acts = torch.cat([p[2] for p in self.parts], dim=1) if len(self.parts) > 1 else self.parts[0][2]
        self.parts = []
        return idx[keep], columns(acts, keep).T.contiguous(), vals[keep], floor


def columns(x2d: Tensor, cols: Tensor) -> Tensor:
    """x2d[:, cols] by a row-wise gather (reads each row once: much faster than index_select on dim 1);
    16-bit floats are moved as int16 (a plain copy)."""
    src = x2d.view(torch.int16) if x2d.element_size() == 2 and x2d.stride(-1) == 1 else x2d
    out = torch.gather(src, 1, cols.expand(x2d.shape[0], -1))
    return out.view(x2d.dtype) if src is not x2d else out
