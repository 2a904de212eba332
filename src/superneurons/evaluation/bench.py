"""Runtime comparison: SN inference with early exit vs the model's own ways of answering (paper Tab. 5).

`run_bench` times, on ONE prepared batch, in one process, interleaved run by run so machine noise
hits every method alike:

- `generate_128`: `generate(max_new_tokens=128)`, greedy (the paper's setting; it stops early only
  if every row has emitted EOS),
- `generate_1`: `generate(max_new_tokens=1)`,
- `prefill`: one full forward (all decoder layers, final norm, LM head at the last position),
- `bare_exit_L{k}`: the physical limit of early exit: a forward that stops right after decoder
  layer k and records nothing (vision tower, projector, embeddings and k+1 decoder layers, nothing
  else): a `LayerTrace` with no recorded layer,
- `sn_L{k}`: the library's SN inference through its public API on the same prepared batch:
  `capture.run_prefill` (hooks on the SN layers, early exit at L* = k), reading the K SN scalars
  (`SuperNeurons.gather`) and `SuperNeuronClassifier.predict_from_acts` (aggregation),
- `sn_e2e_L{k}`: `SuperNeuronClassifier.predict(vlm, samples)` over up to `e2e_batches` batches:
  the same plus input preparation (image decoding and the processor, timed alone as `prepare`),
  which for batch i+1 overlaps the forward of batch i (`activations.prefill.prepared_batches`).

Times are per sample (median batch time / batch size). The SN cost depends on L* and K, not on
which neurons are read, so without a classifier `timing_classifier` builds a K-neuron set at the
requested exit layer. Layers are 0-based: L* = 1 runs two decoder layers.

    >>> res = run_bench(vlm, samples, exit_layers=[1, 15])        # doctest: +SKIP
    >>> res.speedup("sn_L1", "generate_1")                        # doctest: +SKIP
    14.2
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from superneurons.activations.prefill import greedy_generate, real_tokens, run_prefill
from superneurons.activations.trace import LayerTrace
from superneurons.constants import MAX_NEW_TOKENS
from superneurons.errors import DataError
from superneurons.inference.classifier import SuperNeuronClassifier
from superneurons.selection.sets import SuperNeurons
from superneurons.utils.progress import progress as progress_bar

if TYPE_CHECKING:
    from superneurons.data.samples import Sample
    from superneurons.models.base import VLM

DEFAULT_BATCH_SIZE = 4
DEFAULT_REPEATS = 3
DEFAULT_K = 16


@dataclass
class BenchRow:
    """One timed method. `runs` are the measured batch times (s) after warm-up."""

    key: str
    label: str
    group: str  # "model", "input", "limit" (bare exit) or "library"
    seconds_per_sample: float
    runs: list[float]
    exit_layer: int | None = None
    decoder_layers_run: int | None = None
    new_tokens: float | None = None
    bare_key: str | None = None
    num_samples: int | None = None  # samples per timed run (default: the batch)


@dataclass
class BenchResult:
    """All rows of one benchmark run plus what was run (model, batch, machine)."""

    model_name: str
    num_layers: int
    hidden_size: int
    batch_size: int
    prompt_tokens: int
    image_tokens: int
    repeats: int
    warmup: int
    device: str
    threads: int
    rows: list[BenchRow] = field(default_factory=list)
    sn_sets: list[dict[str, Any]] = field(default_factory=list)

    def row(self, key: str) -> BenchRow:
        for r in self.rows:
            if r.key == key:
                return r
        raise DataError(f"no bench row {key!r}; rows: {', '.join(r.key for r in self.rows)}")

    def speedup(self, key: str, over: str) -> float:
        """How many times faster `key` is than `over` (time of `over` / time of `key`)."""
        return self.row(over).seconds_per_sample / self.row(key).seconds_per_sample

    def overhead(self, exit_layer: int) -> float:
        """Library SN inference time / bare hooked exit time at the same layer (1.0 = the limit)."""
        return self.row(f"sn_L{exit_layer}").seconds_per_sample / self.row(f"bare_exit_L{exit_layer}").seconds_per_sample

    @property
    def exit_layers(self) -> list[int]:
        return sorted({r.exit_layer for r in self.rows if r.group == "library" and r.exit_layer is not None})

    def summary(self) -> dict[str, float]:
        """The headline ratios: speed-ups of the library at each L* and its overhead over the limit."""
        out: dict[str, float] = {}
        for k in self.exit_layers:
            for ref in ("generate_128", "generate_1", "prefill"):
                if any(r.key == ref for r in self.rows):
                    out[f"sn_L{k}_vs_{ref}"] = self.speedup(f"sn_L{k}", ref)
                    out[f"bare_exit_L{k}_vs_{ref}"] = self.speedup(f"bare_exit_L{k}", ref)
            out[f"sn_L{k}_over_bare_exit"] = self.overhead(k)
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["summary"] = self.summary()
        return d


def timing_classifier(vlm: VLM, exit_layer: int, k: int = DEFAULT_K) -> SuperNeuronClassifier:
    """K neurons spread over the hidden units of layer `exit_layer`: a timing-only SN set.

    The cost of SN inference is the forward up to L* plus reading K scalars; which K does not
    matter, so this stands in for a probed set when timing a model without one.
    """
    if not 0 <= exit_layer < vlm.num_layers:
        raise DataError(f"exit layer {exit_layer} is outside the model's layers 0..{vlm.num_layers - 1}")
    k = max(1, min(k, vlm.hidden_size))
    neurons = torch.linspace(0, vlm.hidden_size - 1, k).round().long()
    sns = SuperNeurons(layers=torch.full((k,), exit_layer, dtype=torch.long), neurons=neurons,
                       scores=torch.zeros(k, dtype=torch.float64), alpha=torch.zeros(k, dtype=torch.float64),
                       rule=torch.ones(k, dtype=torch.int8), metric="accuracy")
    return SuperNeuronClassifier(sns=sns, fingerprint=dict(vlm.fingerprint), prompt_template=vlm.prompt_template,
                                 aggregation="vote", model=vlm.name_or_path, meta={"timing_only": True})


def _bare_exit(vlm: VLM, batch: dict[str, Any], layer: int) -> None:
    """The physical limit: a forward that stops right after decoder layer `layer`, recording nothing."""
    with LayerTrace(vlm.decoder_layers, record=[], stop_after=layer) as trace:
        trace.run(vlm.model, **batch, use_cache=False)


def run_bench(vlm: VLM, samples: Sequence[Sample], classifiers: Sequence[SuperNeuronClassifier] = (),
              exit_layers: Sequence[int] = (1,), k: int = DEFAULT_K, batch_size: int = DEFAULT_BATCH_SIZE,
              max_new_tokens: int = MAX_NEW_TOKENS, repeats: int = DEFAULT_REPEATS, warmup: int = 1,
              generate: bool = True, progress: bool = True, e2e_batches: int = 4) -> BenchResult:
    """Time every method on the first `batch_size` samples (one batch); see the module docstring.

    `classifiers` are timed at their own L*; every layer in `exit_layers` that no classifier
    covers gets a `timing_classifier` of `k` neurons. `generate=False` skips both generate rows.
    Each method runs `warmup` times untimed, then `repeats` times, interleaved across methods.
    `sn_e2e_L{k}` answers the first `e2e_batches` batches of `samples` (as many as there are).
    """
    if not samples:
        raise DataError("run_bench() got no samples; pass at least one")
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise DataError(f"batch_size={batch_size}, repeats={repeats}, warmup={warmup}: use batch_size >= 1, "
                        "repeats >= 1 and warmup >= 0")
    chunk = list(samples[:batch_size])
    b = len(chunk)
    e2e = list(samples[:batch_size * max(1, e2e_batches)])
    sets: dict[int, SuperNeuronClassifier] = {}
    for clf in classifiers:
        sets.setdefault(clf.exit_layer, clf)
    for layer in exit_layers:
        layer = layer + vlm.num_layers if layer < 0 else layer
        if layer not in sets:
            sets[layer] = timing_classifier(vlm, layer, k)
    batch = vlm.prepare(chunk)
    keep_one = {"logits_to_keep": 1} if "logits_to_keep" in vlm.forward_keys() else {}
    new_tokens: dict[str, list[float]] = {}

    def gen(n: int) -> Callable[[], None]:
        def run() -> None:
            new = greedy_generate(vlm, batch, n)
            new_tokens.setdefault(f"generate_{n}", []).append(float(real_tokens(vlm, new).sum(dim=1).float().mean()))
        return run

    def sn_library(clf: SuperNeuronClassifier) -> Callable[[], None]:
        def run() -> None:
            acts = run_prefill(vlm, batch, clf.layers_needed, clf.exit_layer)
            clf.predict_from_acts(clf.sns.gather(acts).float())
        return run

    methods: list[tuple[BenchRow, Callable[[], None]]] = []
    L = vlm.num_layers
    if generate:
        methods.append((BenchRow("generate_128" if max_new_tokens == MAX_NEW_TOKENS else f"generate_{max_new_tokens}",
                                 f"generate(max_new_tokens={max_new_tokens})", "model", 0.0, [],
                                 L - 1, L), gen(max_new_tokens)))
        if max_new_tokens != 1:
            methods.append((BenchRow("generate_1", "generate(max_new_tokens=1)", "model", 0.0, [], L - 1, L),
                            gen(1)))
    methods.append((BenchRow("prefill", "full prefill (all layers + LM head)", "model", 0.0, [], L - 1, L),
                    lambda: vlm.model(**batch, use_cache=False, **keep_one)))
    methods.append((BenchRow("prepare", "input preparation (images + processor)", "input", 0.0, []),
                    lambda: vlm.prepare(chunk)))
    for layer in sorted(sets):
        clf = sets[layer]
        methods.append((BenchRow(f"bare_exit_L{layer}", f"bare hooked exit after layer {layer} (limit)", "limit",
                                 0.0, [], layer, layer + 1), lambda layer=layer: _bare_exit(vlm, batch, layer)))
        methods.append((BenchRow(f"sn_L{layer}", f"SNs, library, L*={layer} (K={clf.sns.k})", "library", 0.0, [],
                                 layer, layer + 1, bare_key=f"bare_exit_L{layer}"), sn_library(clf)))
        methods.append((BenchRow(f"sn_e2e_L{layer}", f"SNs, predict(samples), L*={layer} incl. preparation",
                                 "library", 0.0, [], layer, layer + 1, num_samples=len(e2e)),
                        lambda clf=clf: clf.predict(vlm, e2e, batch_size=b)))

    total = (warmup + repeats) * len(methods)
    with progress_bar("bench (interleaved runs)", total, enabled=progress) as advance, torch.inference_mode():
        for r in range(warmup + repeats):
            for row, fn in methods:
                t0 = time.perf_counter()
                fn()
                dt = time.perf_counter() - t0
                if r >= warmup:
                    row.runs.append(dt)
                advance(1)
    for row, _ in methods:
        row.seconds_per_sample = statistics.median(row.runs) / (row.num_samples or b)
        if row.key in new_tokens:
            row.new_tokens = statistics.mean(new_tokens[row.key])
    res = BenchResult(model_name=vlm.name_or_path, num_layers=L, hidden_size=vlm.hidden_size, batch_size=b,
                      prompt_tokens=int(batch["input_ids"].shape[1]), image_tokens=vlm.count_image_tokens(batch["input_ids"]),
                      repeats=repeats, warmup=warmup, device=str(vlm.device), threads=torch.get_num_threads(),
                      rows=[row for row, _ in methods])
    res.sn_sets = [{"exit_layer": layer, "k": c.sns.k, "timing_only": bool(c.meta.get("timing_only"))}
                   for layer, c in sorted(sets.items())]
    return res
