"""Evaluation: Super Neurons against the model's own answers, and what each costs.

| module | owns |
|---|---|
| baselines.py | the model's answers: greedy generation + POPE / strict parsers, first-token yes/no logits |
| compare.py | `evaluate`: SNs (mean, vote) vs the baselines on labelled data, agreement rate (Tab. 2, Fig. 4) |
| mcq.py | question-level accuracy of multiple-choice data scored as binary questions |
| cascade_sweep.py | the cascade's accuracy vs cost, margin by margin |
| bench.py | runtime: generate vs prefill vs the bare early exit vs the library (Tab. 5) |
"""

from superneurons.evaluation.baselines import first_token_margins, generate_answers, parse_answers, parse_pope
from superneurons.evaluation.compare import evaluate

__all__ = ["evaluate", "first_token_margins", "generate_answers", "parse_answers", "parse_pope"]
