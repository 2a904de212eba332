"""The evaluate step: Super Neurons vs the model's own answers on labelled data (paper Tab. 2, Fig. 4).

For one classifier, model and sample list, `evaluate` reports accuracy, precision, recall, F1 and
the yes-ratio of:
- `sns_mean` and `sns_vote`: the SNs aggregated both ways (from one capture with early exit at L*),
- `model_generation`: greedy generation (128 new tokens) parsed with the POPE rule,
- `model_generation_strict`: the same replies with the strict parser (its `unparsed` count is
  reported, and unparsed answers count as wrong),
- `model_first_token`: yes vs no logits at the first answer position,
plus the agreement rate of the SNs with the model (eq. 7, per SN; and of each aggregated answer),
wall-clock seconds per method, and for multiple-choice data (samples made by the MCQ loaders)
question-level accuracy. The result is a JSON-able dict.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from superneurons.constants import ANSWER_AGGREGATIONS, MAX_NEW_TOKENS
from superneurons.errors import ConfigError, DataError
from superneurons.evaluation.baselines import first_token_margins, generate_answers, parse_answers
from superneurons.evaluation.mcq import QUESTION_KEY, mcq_accuracy_from_samples
from superneurons.inference.aggregation import aggregate, agreement_rate, sn_votes
from superneurons.inference.cascade import cascade_predict
from superneurons.scoring.metrics import binary_metrics

if TYPE_CHECKING:
    from superneurons.data.samples import Sample
    from superneurons.inference.classifier import SuperNeuronClassifier
    from superneurons.models.base import VLM


def evaluate(clf: SuperNeuronClassifier, vlm: VLM, samples: Sequence[Sample], batch_size: int = 8,
             generate: bool = True, first_token: bool = True, max_new_tokens: int = MAX_NEW_TOKENS,
             strict: bool = True, progress: bool = False, keep_answers: bool = False,
             cascade_margin: float | None = None,
             generated: tuple[Sequence[int], Sequence[str], float] | None = None) -> dict[str, Any]:
    """Metrics of the SNs (mean, vote) and of the model baselines on labelled `samples`.

    `generate=False` / `first_token=False` skip a baseline (generation is the slow one).
    `generated` = (POPE-parsed answers, texts, seconds) of the model's greedy generation on the same
    samples, already run (e.g. cached by an experiment workspace): used instead of generating again.
    `cascade_margin=m` adds the method "cascade" (SNs, deferring |s - 0.5| < m to the model) and
    `result["cascade"]`: deferral rate, average layers per sample, accuracy, F1, time per sample.
    `keep_answers` adds the per-sample predictions and generated texts under "answers".
    """
    if not samples:
        raise DataError("evaluate() got no samples")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ConfigError(f"evaluate: max_new_tokens={max_new_tokens!r}; generate at least one token")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"evaluate: batch_size={batch_size!r}; use a positive batch size")
    unlabelled = [s.id for s in samples if s.label is None]
    if unlabelled:
        raise DataError(f"sample(s) {unlabelled[:5]} have no label; evaluation needs yes/no labels "
                        "(use `superneurons predict` for unlabelled data)")
    y = torch.tensor([s.y for s in samples])
    t0 = time.perf_counter()
    acts = clf.sn_activations(vlm, samples, batch_size=batch_size, progress=progress, strict=strict)
    t_sn = time.perf_counter() - t0
    votes = sn_votes(acts, clf.sns.alpha, clf.sns.rule)
    preds: dict[str, torch.Tensor] = {}
    scores: dict[str, torch.Tensor] = {}
    for how in ANSWER_AGGREGATIONS:
        preds[f"sns_{how}"], scores[f"sns_{how}"] = aggregate(acts, how, clf.sns.alpha, clf.sns.rule)
    timing = {"sns": t_sn}
    texts: list[str] = []
    if generated is not None:
        gen_preds, texts, gen_seconds = generated
        if len(gen_preds) != len(samples) or len(texts) != len(samples):
            raise DataError(f"generated answers for {len(gen_preds)} samples, evaluating {len(samples)}: "
                            "pass the generation of exactly these samples")
        texts = list(texts)
        timing["model_generation"] = float(gen_seconds)
        preds["model_generation"] = torch.as_tensor(list(gen_preds)).long()
        preds["model_generation_strict"] = torch.tensor(parse_answers(texts, "strict"))
    elif generate:
        t0 = time.perf_counter()
        texts = generate_answers(vlm, samples, max_new_tokens=max_new_tokens, batch_size=batch_size)
        timing["model_generation"] = time.perf_counter() - t0
        preds["model_generation"] = torch.tensor(parse_answers(texts, "pope"))
        preds["model_generation_strict"] = torch.tensor(parse_answers(texts, "strict"))
    if first_token:
        t0 = time.perf_counter()
        margins = first_token_margins(vlm, samples, batch_size=batch_size)
        timing["model_first_token"] = time.perf_counter() - t0
        preds["model_first_token"] = (margins > 0).long()
        scores["model_first_token"] = margins

    result: dict[str, Any] = {
        "n": len(samples),
        "classifier": {"k": clf.sns.k, "exit_layer": clf.exit_layer, "layers": clf.layers_needed,
                       "aggregation": clf.aggregation, "metric": clf.sns.metric, "snt": clf.sns.snt,
                       "token": clf.token},
        "model": vlm.name_or_path, "num_layers": vlm.num_layers,
        "methods": {name: binary_metrics(p, y) for name, p in preds.items()},
        "seconds": timing,
    }
    agreement: dict[str, float] = {}
    for ref in ("model_generation", "model_first_token"):
        if ref in preds:
            agreement[f"sns_vs_{ref}"] = agreement_rate(votes.long(), preds[ref])  # eq. 7
            for how in ANSWER_AGGREGATIONS:
                agreement[f"sns_{how}_vs_{ref}"] = agreement_rate(preds[f"sns_{how}"], preds[ref])
    result["agreement"] = agreement
    if cascade_margin is not None:
        casc = cascade_predict(clf, vlm, samples, cascade_margin, batch_size, strict=strict, progress=progress)
        preds["cascade"] = casc.preds
        result["methods"]["cascade"] = binary_metrics(casc.preds, y)
        result["seconds"]["cascade"] = casc.total_seconds
        result["cascade"] = casc.summary(y)
    mcq = _mcq(samples, scores)
    if mcq:
        result["mcq"] = mcq
    if keep_answers:
        result["answers"] = [
            {"id": s.id, "image": None if hasattr(s.image, "size") else str(s.image), "question": s.question,
             "label": s.label, **{k: int(v[i]) for k, v in preds.items()},
             **({"text": texts[i]} if texts else {})}
            for i, s in enumerate(samples)]
    return result


def _mcq(samples: Sequence[Sample], scores: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Question-level accuracy per scored method, when the samples are MCQ binaries: every sample has a
    question id and ids repeat (a question's options; POPE ids, one per question, do not)."""
    qids = [str(s.meta[QUESTION_KEY]) for s in samples if QUESTION_KEY in s.meta]
    if len(qids) < len(samples) or len(set(qids)) == len(qids):
        return {}
    out = {}
    for name, sc in scores.items():
        try:
            out[name] = mcq_accuracy_from_samples(samples, sc).to_dict()
        except DataError as exc:  # e.g. a subset without whole questions
            out[name] = {"error": str(exc)}
    return out
