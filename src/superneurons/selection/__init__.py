"""Selection (Alg. 1 line 7, Sec. 4.2): which neurons are Super Neurons, and the SNt sweep.

| module | owns |
|---|---|
| sets.py | `SuperNeurons` (a selected set: layers, neurons, thresholds, L*) and `select_super_neurons` |
| sweep.py | `snt_candidates`, `snt_sweep` (every candidate SNt evaluated on the probing set), `choose_snt` |
| driver.py | `fit`: the one Alg. 1 driver (score, sweep, select) |
"""

from superneurons.selection.driver import Selection, best_single, fit
from superneurons.selection.sets import SuperNeurons, select_super_neurons
from superneurons.selection.sweep import choose_snt, snt_candidates, snt_sweep

__all__ = ["Selection", "SuperNeurons", "best_single", "choose_snt", "fit", "select_super_neurons",
           "snt_candidates", "snt_sweep"]
