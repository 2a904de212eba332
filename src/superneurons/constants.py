"""Names and defaults defined once: artifact file names, the paper's protocol, the valid choices.

Import-light (no torch), so the CLI and the config objects can use it at start-up.
"""

from __future__ import annotations

from typing import Literal

__version__ = "0.1.0"

# ---- the paper's protocol (Sec. 3-4) --------------------------------------------------------------
MAX_NEW_TOKENS = 128  #: generation budget of the model baseline and of token "last" (Sec. 4.2)
ALPHA = 0.0  #: activation threshold: a neuron says yes when H > alpha (eq. 3)
SNT_STEP = 0.01  #: SNt sweep step: 1 point (LLaVA); 0.001 = 0.1 point (Qwen)
SNT_DEPTH = 0.03  #: how far below the best single neuron the SNt sweep goes (3 points)
METRIC = "accuracy"  #: what SNt is optimised for by default
#: largest image (width x height) read: well above any VLM's input, far below a decompression bomb
MAX_PIXELS = 50_000_000

# ---- choices --------------------------------------------------------------------------------------
Token = Literal["first", "last"]
TOKENS: tuple[str, ...] = ("first", "last")
Metric = Literal["accuracy", "precision", "recall", "f1"]
METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1")
Aggregation = Literal["mean", "vote", "fraction"]
AGGREGATIONS: tuple[str, ...] = ("mean", "vote", "fraction")
#: the aggregations whose answers reports compare (`fraction` answers exactly as `vote`)
ANSWER_AGGREGATIONS: tuple[str, ...] = ("mean", "vote")
Polarity = Literal["positive", "both"]
POLARITIES: tuple[str, ...] = ("positive", "both")
StoreDtype = Literal["float16", "bfloat16", "float32"]
STORE_DTYPES: tuple[str, ...] = ("float16", "bfloat16", "float32")
Parser = Literal["pope", "strict"]
PARSERS: tuple[str, ...] = ("pope", "strict")

# ---- artifacts on disk ----------------------------------------------------------------------------
MANIFEST_NAME = "manifest.json"  #: activation store: what was captured
SHARD_PATTERN = "shard-{:05d}.safetensors"  #: activation store: one shard of samples
RANK_DIR = "rank-{:05d}"  #: a distributed store: one rank's own store
CLASSIFIER_WEIGHTS = "classifier.safetensors"
CLASSIFIER_CONFIG = "classifier.json"
MODEL_CARD = "README.md"  #: the card of a classifier pushed to the Hub (and of its repo root)
LIBRARY_NAME = "superneurons"  #: `library_name` of the Hub cards; the lmms-eval model name
CASCADE_JSON = "cascade_sweep.json"
CASCADE_PLOT = "cascade_sweep.png"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
RESULTS_JSON = "results.json"
FIGURE_DIR = "figures"

# ---- optional dependencies ------------------------------------------------------------------------
REPORT_EXTRA = "pip install superneurons[report]"
LMMS_EVAL_EXTRA = "pip install superneurons[lmms-eval]"
