"""Scoring (Alg. 1 lines 5-6): every neuron as a one-scalar yes/no classifier, exact counts to metrics.

| module | owns |
|---|---|
| metrics.py | accuracy / precision / recall / F1 from counts (eqs. 8-11), on neurons and on answers |
| counting.py | exact per-neuron confusion counts of `H > alpha`, for one or K thresholds in one read |
| thresholds.py | exact per-neuron best thresholds (`per_neuron_alpha`): every cut of the sorted values |
| streaming.py | what is read: a tensor (CPU or GPU) or a store, chunk by chunk, the store one chunk ahead |
| pool.py | the near-best neurons kept for the SNt sweep |
| neurons.py | `score_neurons` / `probe_neurons` / `alpha_sweep`: one streamed pass over a tensor or store |
| reference.py | the scorer before the single-pass counter, the baseline of benchmarks and tests |
"""

from superneurons.constants import METRICS
from superneurons.scoring.metrics import binary_metrics, confusion_counts, metrics_from_counts
from superneurons.scoring.neurons import NeuronScores, Probe, alpha_sweep, probe_neurons, score_neurons

__all__ = ["METRICS", "NeuronScores", "Probe", "alpha_sweep", "binary_metrics", "confusion_counts",
           "metrics_from_counts", "probe_neurons", "score_neurons"]
