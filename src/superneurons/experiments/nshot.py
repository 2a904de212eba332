"""The `nshot` experiment: n-shot prompting vs Super Neurons (paper Tab. 8).

For each validation question, `n` solved examples drawn from the probing set (classes as balanced
as n allows: n//2 of each, the odd one of a random class, in random order) come first as earlier
chat turns, each a user turn with its image and question and an assistant turn with its answer;
then the question itself. The conversation goes through the model's own chat template
(`fewshot_prompt`), so the prompt holds n + 1 images (`prepare_fewshot` builds the processor
inputs: one image list per prompt, in order). Replies are generated greedily and parsed with the
POPE rule, exactly as the model baseline (`superneurons.baselines`); n = 0 is that baseline.

Example answers are written "Yes"/"No" (LLaVA's style) unless the tokenizer does not know those
words, then as the lower-case labels.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from superneurons.activations.prefill import greedy_generate
from superneurons.errors import DataError, ModelError
from superneurons.evaluation.baselines import parse_answers
from superneurons.experiments._common import Dataset, ExperimentResult, finish, labels_of, metric_row
from superneurons.experiments.workspace import Workspace

if TYPE_CHECKING:
    from transformers import BatchEncoding

    from superneurons.data.samples import Sample
    from superneurons.models.base import VLM

DEFAULT_SHOTS: tuple[int, ...] = (0, 1, 3, 5)


class ContextTooLong(ModelError):
    """An n-shot prompt (plus the answer budget) does not fit the model's context window."""


def answer_words(vlm: VLM) -> dict[str, str]:
    """How example answers are written: {"yes": "Yes", "no": "No"}, or the labels if those are unknown."""
    unk = vlm.tokenizer.unk_token_id
    words = {"yes": "Yes", "no": "No"}
    for w in words.values():
        ids = vlm.tokenizer.encode(w, add_special_tokens=False)
        if not ids or (unk is not None and unk in ids):
            return {"yes": "yes", "no": "no"}
    return words


def fewshot_messages(vlm: VLM, examples: Sequence[Sample], question: str,
                     answers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The chat: per example a user turn (image + question) and an assistant turn (its answer),
    then the user turn of `question`. User turns are the adapter's own (`VLM.messages`)."""
    answers = answers or answer_words(vlm)
    msgs: list[dict[str, Any]] = []
    for ex in examples:
        if ex.label is None:
            raise DataError(f"example {ex.id!r} has no label; n-shot examples must be solved")
        msgs += vlm.messages(ex.question)
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": answers[ex.label]}]})
    return msgs + vlm.messages(question)


def fewshot_prompt(vlm: VLM, examples: Sequence[Sample], question: str, answers: dict[str, str] | None = None) -> str:
    """The prompt string of `fewshot_messages` (chat template applied, generation prompt appended).

    With no examples it equals `vlm.build_prompt(question)`.
    """
    owner = vlm.chat_template_owner()
    if owner is None:
        raise ModelError(f"{vlm.name_or_path}: the processor has no chat template, so n-shot examples cannot be "
                         "shown as earlier turns; use a checkpoint (or save a processor) with a chat template")
    answers = answers or answer_words(vlm)
    text = owner.apply_chat_template(fewshot_messages(vlm, examples, question, answers),
                                     add_generation_prompt=True, tokenize=False)
    if examples and answers[examples[0].label] not in text:
        raise ModelError(f"{vlm.name_or_path}: the chat template drops assistant turns, so examples cannot "
                         "be shown with their answers")
    return text


def prepare_fewshot(vlm: VLM, queries: Sequence[Sample], examples: Sequence[Sequence[Sample]],
                    answers: dict[str, str] | None = None) -> BatchEncoding:
    """Left-padded model inputs for a batch of n-shot prompts: each query's examples' images, then its own."""
    if len(queries) != len(examples):
        raise DataError(f"{len(queries)} queries but {len(examples)} example lists")
    answers = answers or answer_words(vlm)
    texts = [fewshot_prompt(vlm, ex, q.question, answers) for q, ex in zip(queries, examples, strict=True)]
    images = [s.load_image() for q, ex in zip(queries, examples, strict=True) for s in (*ex, q)]
    return vlm.encode(texts, images)


def draw_examples(pool: Sequence[Sample], n: int, rng: random.Random, exclude: Sample | None = None) -> list[Sample]:
    """n solved examples from `pool`: n//2 yes + n//2 no (+1 of a random class if n is odd), shuffled.

    Never the query itself (same id or same image and question).
    """
    if n == 0:
        return []
    ok = [s for s in pool if exclude is None or (s.id != exclude.id and
                                                  (s.image, s.question) != (exclude.image, exclude.question))]
    by = {lab: [s for s in ok if s.label == lab] for lab in ("yes", "no")}
    want = {"yes": n // 2, "no": n // 2}
    if n % 2:
        want[rng.choice(("yes", "no"))] += 1
    for lab, k in want.items():
        if len(by[lab]) < k:
            raise DataError(f"{n}-shot needs {k} {lab!r} examples but the probing set has {len(by[lab])}")
    picked = rng.sample(by["yes"], want["yes"]) + rng.sample(by["no"], want["no"])
    rng.shuffle(picked)
    return picked


def generate_fewshot(vlm: VLM, queries: Sequence[Sample], pool: Sequence[Sample], n: int, seed: int = 0,
                     batch_size: int = 4, max_new_tokens: int = 128) -> tuple[list[str], list[list[str]]]:
    """Greedy replies to n-shot prompts (the baseline's settings) and the example ids used per query.

    Generation stops at the model's context (`max_position_embeddings`) if the prompt leaves
    fewer than `max_new_tokens` positions; a prompt that fills the context raises `ContextTooLong`.
    """
    rng = random.Random(f"nshot/{seed}/{n}")
    examples = [draw_examples(pool, n, rng, exclude=q) for q in queries]
    texts: list[str] = []
    limit = getattr(vlm.text_config, "max_position_embeddings", None)
    for i in range(0, len(queries), batch_size):
        batch = prepare_fewshot(vlm, queries[i:i + batch_size], examples[i:i + batch_size])
        length = int(batch["input_ids"].shape[1])
        budget = max_new_tokens if limit is None else min(max_new_tokens, limit - length)
        if budget < 1:
            raise ContextTooLong(f"a {n}-shot prompt has {length} tokens, the model's context is {limit} "
                                 "(max_position_embeddings); use fewer shots")
        texts += vlm.tokenizer.batch_decode(greedy_generate(vlm, batch, budget), skip_special_tokens=True)
    return texts, [[s.id for s in ex] for ex in examples]


def run(ws: Workspace, datasets: Sequence[Dataset], out_dir: str | Path | None = None,
        shots: Sequence[int] = DEFAULT_SHOTS, batch_size: int | None = None) -> ExperimentResult:
    """Model accuracy/precision/recall/F1 with n solved probe examples in the prompt, and SNs."""
    vlm, o = ws.vlm, ws.options
    if any(s < 0 for s in shots):
        raise DataError(f"shots {list(shots)}: use non-negative numbers of examples")
    rows: list[dict[str, Any]] = []
    used: dict[str, Any] = {}
    notes = ["n solved probe examples (balanced) precede each question as chat turns with their images; "
             "replies parsed with the POPE rule, as the model baseline (0-shot)."]
    for ds in datasets:
        probe, val = ds.need("probe", "nshot"), ds.need("val", "nshot")
        y = labels_of(val)
        for n in sorted(shots):
            if n == 0:  # the same prompt as the model baseline: reuse its cached answers
                rows.append({**ws.model_row(val, dataset=ds.name), "method": "0-shot", "shots": 0})
                continue
            try:
                texts, ex_ids = generate_fewshot(vlm, val, probe, n, seed=o.seed,
                                                 batch_size=batch_size or o.batch_size, max_new_tokens=o.max_new_tokens)
            except ContextTooLong as exc:  # recorded, and the larger n are skipped too
                notes.append(f"{ds.name}: {n}-shot and above skipped: {exc}")
                break
            rows.append(metric_row(parse_answers(texts, "pope"), y, dataset=ds.name, method=f"{n}-shot", shots=n))
            used[f"{ds.name}/{n}"] = ex_ids[:3]
        rows += ws.sn_rows(ws.store(probe), ws.store(val), y, dataset=ds.name)
    result = ExperimentResult(
        name="nshot", title="n-shot prompting vs SNs", paper="Tab. 8",
        columns=["dataset", "method", "accuracy", "precision", "recall", "f1", "yes_ratio"], rows=rows,
        meta={"model": vlm.name_or_path, "shots": list(shots), "answers": answer_words(vlm),
              "example_ids_first_queries": used, "options": vars(o), "notes": notes})
    return finish(result, out_dir)
