"""One small, validated settings object per pipeline step: capture, score, select, infer.

Each is a frozen dataclass whose defaults are the paper's protocol (`superneurons.constants`);
a bad value raises a `ConfigError` naming the field and its valid values as soon as the object
is built, so a long run never starts with a setting that fails later. The CLI builds these from
its options; library functions take one (`config=`) and/or the same fields as keywords:

    >>> CaptureConfig(token="first", exit_layer=1).batch_size
    8
    >>> configure(CaptureConfig, None, {"batch_size": 4}).batch_size
    4
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from superneurons.constants import (
    AGGREGATIONS,
    ALPHA,
    MAX_NEW_TOKENS,
    MAX_PIXELS,
    METRIC,
    METRICS,
    POLARITIES,
    SNT_DEPTH,
    SNT_STEP,
    STORE_DTYPES,
    TOKENS,
    Aggregation,
    Metric,
    Polarity,
    StoreDtype,
    Token,
)
from superneurons.errors import ConfigError

#: a coarse grid for `per_neuron_alpha` (each neuron's 5%, 10%, ..., 95% quantiles); by default every cut is tried
QUANTILES: tuple[float, ...] = tuple(i / 20 for i in range(1, 20))

C = TypeVar("C")


def _choice(owner: str, name: str, value: Any, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{owner}: {name} {value!r} is not one of {', '.join(choices)}")


def _at_least(owner: str, name: str, value: int | None, low: int, fix: str) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
        raise ConfigError(f"{owner}: {name}={value!r}; {fix}")


def _in_range(owner: str, name: str, value: float | None, low: float, high: float, fix: str) -> None:
    if value is not None and not (isinstance(value, int | float) and low <= value <= high):
        raise ConfigError(f"{owner}: {name}={value!r} is outside [{low}, {high}]; {fix}")


def _layers(value: Iterable[int] | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"layers {value!r}: give layer indices (e.g. [0, 1, 5]) or None for all") from None


@dataclass(frozen=True)
class CaptureConfig:
    """What `capture` / `probe` record (Alg. 1 line 3) and how the store is written.

    `token`: "first" (the last prompt position; early exit possible) or "last" (last token of a
    greedy generation of `max_new_tokens`). `layers`: decoder layers to record (None: all, or
    0..exit_layer). `exit_layer`: stop every forward after this layer. `dtype`: how activations
    are stored. `shard_size`: samples per shard file. `skip_bad`: skip unreadable images (listed
    in the manifest) instead of stopping. `prefix_reuse`: encode each image and shared prompt
    prefix once. `require_labels`: the set must hold both yes and no (a probing set).
    `refuse_changed`: resuming a store whose samples changed (question or image) raises a
    StoreError instead of recomputing their shards. `max_pixels`: refuse (or with `skip_bad` skip)
    an image over this many pixels, read from its header (None: no limit). `prefetch`: prepare
    batch i+1 in a worker thread while batch i runs (same values; False: one after another).
    """

    token: Token = "first"
    layers: tuple[int, ...] | None = None
    exit_layer: int | None = None
    batch_size: int = 8
    max_new_tokens: int = MAX_NEW_TOKENS
    dtype: StoreDtype = "float16"
    shard_size: int = 256
    skip_bad: bool = False
    prefix_reuse: bool = False
    require_labels: bool = True
    refuse_changed: bool = False
    max_pixels: int | None = MAX_PIXELS
    prefetch: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", _layers(self.layers))
        _choice("capture", "token", self.token, TOKENS)
        _choice("capture", "dtype", self.dtype, STORE_DTYPES)
        _at_least("capture", "batch_size", self.batch_size, 1, "use a positive batch size")
        _at_least("capture", "shard_size", self.shard_size, 1, "use a positive number of samples per shard")
        _at_least("capture", "max_new_tokens", self.max_new_tokens, 1, "generate at least one token")
        _at_least("capture", "max_pixels", self.max_pixels, 1, "use a positive pixel count (None: no limit)")
        if self.exit_layer is not None and (not isinstance(self.exit_layer, int) or isinstance(self.exit_layer, bool)):
            raise ConfigError(f"capture: exit_layer={self.exit_layer!r}; use a decoder layer index (negative: from the end)")
        if self.token == "last" and self.exit_layer is not None:
            raise ConfigError("capture: exit_layer needs token 'first': the last token exists only after a full "
                              "generation")
        if self.prefix_reuse and self.token != "first":
            raise ConfigError("capture: prefix reuse needs token 'first' (a shared prompt prefix); drop it for "
                              "token 'last'")


@dataclass(frozen=True)
class ScoreConfig:
    """How every neuron is scored (Alg. 1 lines 5-6): the rule `H > alpha` and what is counted.

    `metrics`: the scores to compute. `polarity="both"` also fits the flipped rule per neuron;
    `per_neuron_alpha` fits each neuron's threshold: the exact best cut of its values, or the best
    of its own `quantiles` when given (e.g. `QUANTILES`) (both beyond the paper, off by default).
    `chunk_layers`: layers read per chunk (memory vs speed).
    """

    alpha: float = ALPHA
    metrics: tuple[str, ...] = METRICS
    polarity: Polarity = "positive"
    per_neuron_alpha: bool = False
    quantiles: tuple[float, ...] | None = None
    chunk_layers: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", tuple(self.metrics))
        if self.quantiles is not None:
            object.__setattr__(self, "quantiles", tuple(float(q) for q in self.quantiles))
        if not self.metrics:
            raise ConfigError(f"score: metrics is empty; ask for at least one of {', '.join(METRICS)}")
        for m in self.metrics:
            _choice("score", "metric", m, METRICS)
        _choice("score", "polarity", self.polarity, POLARITIES)
        if not (isinstance(self.alpha, int | float) and math.isfinite(self.alpha)):
            raise ConfigError(f"score: alpha={self.alpha!r}; use a finite threshold (the paper uses 0)")
        bad_q = [q for q in self.quantiles or () if not 0.0 < q < 1.0]
        if bad_q:
            raise ConfigError(f"score: quantiles {bad_q} are outside (0, 1); use fractions such as 0.05 .. 0.95")
        if self.per_neuron_alpha and self.quantiles is not None and not self.quantiles:
            raise ConfigError("score: per_neuron_alpha needs at least one quantile (or none given: every cut)")
        _at_least("score", "chunk_layers", self.chunk_layers, 1, "use a positive number of layers per chunk")


@dataclass(frozen=True)
class SelectConfig:
    """Which neurons become Super Neurons (Alg. 1 line 7, eq. 5) and how SNt is chosen.

    With neither `snt` nor `top_k`, SNt is swept from the best single neuron's score down `depth`
    in steps of `step` and the candidate with the highest `choose_by` column on the probing set
    wins (default: `<aggregation>_<metric>`). `max_layer` keeps only layers <= it (earlier exit).
    """

    metric: Metric = METRIC
    snt: float | None = None
    top_k: int | None = None
    max_layer: int | None = None
    step: float = SNT_STEP
    depth: float = SNT_DEPTH
    choose_by: str | None = None

    def __post_init__(self) -> None:
        _choice("select", "metric", self.metric, METRICS)
        _in_range("select", "snt", self.snt, 0.0, 1.0, "SNt is a score fraction (0.92, not 92)")
        _at_least("select", "top_k", self.top_k, 1, "ask for at least one neuron")
        _at_least("select", "max_layer", self.max_layer, 0, "use a decoder layer index (0 = the first layer)")
        _in_range("select", "step", self.step, 1e-6, 1.0, "e.g. 0.01 (1 point) or 0.001 (0.1 point)")
        _in_range("select", "depth", self.depth, 0.0, 1.0, "e.g. 0.03 (3 points below the best neuron)")


@dataclass(frozen=True)
class InferConfig:
    """How a saved classifier answers (Alg. 2): aggregation, batching, checks, cascade.

    `aggregation`: None keeps the classifier's own. `strict`: refuse a model whose fingerprint
    differs from the probed one. `cascade_margin`: defer samples whose SN score s has
    |s - 0.5| < margin to the model (needs the whole model). `truncate`: load only the decoder
    layers 0..L* (True), the whole model (False), or None: truncated where that is exact (token
    "first", no cascade margin), else whole. `skip_bad`: skip samples whose image is unreadable or
    over `max_pixels` (read from its header; None: no limit) instead of stopping.
    """

    aggregation: Aggregation | None = None
    batch_size: int = 8
    strict: bool = True
    cascade_margin: float | None = None
    truncate: bool | None = None
    skip_bad: bool = False
    max_pixels: int | None = MAX_PIXELS

    def __post_init__(self) -> None:
        if self.aggregation is not None:
            _choice("infer", "aggregation", self.aggregation, AGGREGATIONS)
        _at_least("infer", "batch_size", self.batch_size, 1, "use a positive batch size")
        _at_least("infer", "max_pixels", self.max_pixels, 1, "use a positive pixel count (None: no limit)")
        _in_range("infer", "cascade_margin", self.cascade_margin, 0.0, 0.5,
                  "0 answers from the SNs only, 0.5 defers every sample to the model")
        if self.truncate and self.cascade_margin is not None:
            raise ConfigError("infer: truncate loads layers 0..L* only, but a cascade margin resumes deferred "
                              "samples to the last layer: use one of them")


def split_options(options: Mapping[str, Any], *classes: type) -> list[dict[str, Any]]:
    """`options` divided among config classes by field name (one dict per class, in order); a name
    no class has is an error listing the valid ones."""
    parts: list[dict[str, Any]] = [{} for _ in classes]
    fields = [{f.name for f in dataclasses.fields(c)} for c in classes]
    for key, value in options.items():
        owner = next((i for i, names in enumerate(fields) if key in names), None)
        if owner is None:
            valid = sorted(set().union(*fields))
            raise ConfigError(f"unknown option {key!r}; options: {', '.join(valid)}")
        parts[owner][key] = value
    return parts


def configure(cls: type[C], config: C | None, options: Mapping[str, Any]) -> C:
    """`config` (or the defaults of `cls`) with `options` replacing fields; unknown names are an error."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__} has no option {', '.join(map(repr, unknown))}; "
                          f"options: {', '.join(sorted(names))}")
    base = config if config is not None else cls()
    return dataclasses.replace(base, **options) if options else base  # type: ignore[type-var]
