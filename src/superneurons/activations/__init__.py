"""Activations (Alg. 1 line 3): run the VLM and capture the residual stream after each decoder layer.

| module | owns |
|---|---|
| trace.py | `LayerTrace`, the one hook mechanism (record, stop after layer k, hooks removed in `finally`), and `resume`, which finishes a stopped forward (the cascade's second half) |
| prefill.py | forward primitives on prepared batches: `run_prefill`, `greedy_generate`, layer choices; `prepared_batches` (batch i+1 prepared while batch i runs) |
| extract.py | `capture(vlm, samples)`: [N, L, D] at the first or last token |
| prefix.py | per-image prefix reuse (one prefill of image + shared prefix per image) |
| store.py | the activation store on disk: sharded safetensors + manifest.json, each shard checked when read |
| identity.py | digests: each sample's content identity (id, label, question, image bytes), per-layer shard checksums |
| probing.py | `probe`: capture a sample list into a resumable store (one process or a torchrun job) |
| distributed.py | ranks: slices, gathers, the merged manifest |
"""

from superneurons.activations.extract import capture, capture_batches
from superneurons.activations.prefill import greedy_generate, parse_layers, resolve_layers, run_prefill
from superneurons.activations.probing import probe, probe_distributed
from superneurons.activations.store import ActivationStore, load_activations
from superneurons.activations.trace import LayerTrace, StopForward, resume

__all__ = ["ActivationStore", "LayerTrace", "StopForward", "capture", "capture_batches", "greedy_generate",
           "load_activations", "parse_layers", "probe", "probe_distributed", "resolve_layers", "resume",
           "run_prefill"]
