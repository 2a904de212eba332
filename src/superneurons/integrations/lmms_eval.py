"""The lmms-eval model backend: `lmms-eval --model superneurons` answers a task from a classifier's Super Neurons.

    lmms-eval --model superneurons --model_args classifier=DIR_OR_HUB_ID,pretrained=MODEL,truncate=true \\
        --tasks pope --batch_size 16

lmms-eval finds the model through its entry-point group `lmms_eval.models` (pyproject.toml:
`superneurons = "superneurons.integrations.lmms_eval:manifest"`, a `ModelManifest` naming
`SuperNeuronsLMM`). lmms-eval is imported only when lmms-eval itself asks for the class (it is
built on first access), so this module imports without it.

- `generate_until`: a yes/no task (POPE, ...) gets "Yes"/"No" from the SNs, the forward stopping
  after L*, in batches of `--batch_size`. A prompt that lists options one per line ("A. cat",
  as lmms-eval's ScienceQA writes them) is a multiple-choice question: each option becomes the
  paper's binary question ("{q} Is it {a}? Answer with yes or no.", `superneurons.data.mcq`) and
  the answer is the letter of the highest-scoring one (SN score, ties broken by the mean SN margin).
- `loglikelihood`: for a "yes"/"no" continuation, -log p with p the SN score of the context
  (its probability of yes, `superneurons.inference.cascade.cascade_score`) or 1 - p; for any
  other continuation (an option of a `multiple_choice` task, its text or its letter), -log p of
  that option's binary question. lmms-eval's own models return this loss (negative
  log-likelihood) and its multiple-choice scoring takes the argmin, so the highest-scoring option wins.
- `generate_until_multi_round`: NotImplementedError.

SNs are prompt-sensitive: each question is checked against the classifier's `question_format`
(what every probing question shared) and a task whose questions read differently gets one warning
naming both (set the task's `lmms_eval_specific_kwargs: {superneurons: {pre_prompt: "", post_prompt: ""}}`
to pass the bare question).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from superneurons.constants import LIBRARY_NAME, LMMS_EVAL_EXTRA
from superneurons.data.mcq import mcq_question
from superneurons.data.samples import Sample
from superneurons.errors import ConfigError, DataError
from superneurons.inference.aggregation import sn_margins
from superneurons.inference.cascade import cascade_score, resolve_score
from superneurons.inference.classifier import SuperNeuronClassifier
from superneurons.utils.progress import progress

CLASS_NAME = "SuperNeuronsLMM"
EPS = 1e-6  #: SN scores are clipped to [EPS, 1 - EPS] before the log
CHUNK = 256  #: questions whose images are held in memory at once
DEFAULT_BATCH = 8  #: for --batch_size auto
_OPTION = re.compile(r"^\s*\(?([A-Z])[.)]\s+(.+?)\s*$")
_ANSWERS = {"yes": 1, "no": 0}


def manifest() -> Any:
    """The `lmms_eval.models` entry point: lmms-eval model `superneurons` -> `SuperNeuronsLMM`."""
    try:
        from lmms_eval.models.registry_v2 import ModelManifest
    except ImportError:
        raise ImportError(f"the lmms-eval backend needs lmms-eval: {LMMS_EVAL_EXTRA}") from None
    return ModelManifest(model_id=LIBRARY_NAME, simple_class_path=f"{__name__}.{CLASS_NAME}")


def parse_mcq(context: str) -> tuple[str, list[tuple[str, str]]] | None:
    """(stem, [(letter, option), ...]) of a prompt listing options "A. ..", "B. .." one per line, else None.

    The stem is the text before the options without "Context: ..." lines (the probing questions
    of `superneurons.data.mcq` carry no hint); text after the options (the instruction) is dropped.
    """
    lines = context.splitlines()
    options: list[tuple[str, str]] = []
    first = 0
    for i, line in enumerate(lines):
        m = _OPTION.match(line)
        if m and m.group(1) == chr(ord("A") + len(options)):
            first = i if not options else first
            options.append((m.group(1), m.group(2)))
        elif options:
            break
    if len(options) < 2:
        return None
    stem = " ".join(t.strip() for t in lines[:first] if t.strip() and not t.strip().startswith("Context:"))
    return stem, options


def _answer_word(text: str) -> int | None:
    return _ANSWERS.get(text.strip().strip(".!").lower())


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1", "yes"):
        return True
    if str(value).lower() in ("false", "0", "no"):
        return False
    raise ConfigError(f"--model_args {name}={value!r}: use true or false")


def _batch_size(value: Any) -> int:
    if str(value).startswith("auto"):
        return DEFAULT_BATCH
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--batch_size {value!r}: use a positive integer or auto") from None
    if n < 1:
        raise ConfigError(f"--batch_size {n}: use a positive integer")
    return n


@dataclass
class _Item:
    """One request: its binary question(s) (one per option for an MCQ), the option letters, its image."""

    task: str
    where: str
    questions: list[str]
    image: Callable[[], Any]
    letters: list[str] | None = None
    target: int | None = None  # loglikelihood of a yes (1) / no (0) continuation


class SuperNeuronsBackend:
    """lmms-eval model `superneurons`: a saved classifier and its model (`--model_args`):

    `classifier` (folder or Hub id user/repo[/subfolder]), `subfolder`, `classifier_revision`;
    `pretrained` (default: the model recorded in the classifier), `revision`, `truncate` (read
    only layers 0..L*; default: where exact, see `SuperNeuronClassifier.load_model`), `dtype`,
    `device`, `aggregation`, `strict` (refuse another checkpoint).
    `batch_size` and `device` also come from lmms-eval's `--batch_size` / `--device`.
    """

    def __init__(self, classifier: str, pretrained: str | None = None, truncate: bool | str | None = None,
                 subfolder: str | None = None, classifier_revision: str | None = None, revision: str | None = None,
                 batch_size: int | str = DEFAULT_BATCH, device: str | None = None, dtype: str = "auto",
                 aggregation: str | None = None, strict: bool = True, max_batch_size: int | None = None,
                 **unknown: Any) -> None:
        super().__init__()
        if unknown:
            raise ConfigError(f"unknown --model_args {', '.join(sorted(unknown))} for model {LIBRARY_NAME}; valid: "
                              "classifier, subfolder, classifier_revision, pretrained, revision, truncate, dtype, "
                              "device, aggregation, strict")
        self.clf = SuperNeuronClassifier.from_pretrained(str(classifier), subfolder=subfolder,
                                                         revision=classifier_revision)
        hub = {"revision": str(revision)} if revision else {}
        self.vlm = self.clf.load_model(str(pretrained) if pretrained else None, truncate=None if truncate is None else _as_bool(truncate, "truncate"),
                                       dtype=dtype, device=device or "auto", **hub)
        self.strict = _as_bool(strict, "strict")
        self.clf.check_compatible(self.vlm, strict=self.strict)  # refuse at start, not after the first batch
        self.batch_size = _batch_size(batch_size)
        self.aggregation, self.temperature, _ = resolve_score(self.clf, aggregation)
        self._warned: set[str] = set()
        self.task_dict: dict[str, Any] = getattr(self, "task_dict", {})

    # ---- lmms-eval's requests ------------------------------------------------------------------
    def generate_until(self, requests: Sequence[Any]) -> list[str]:
        """"Yes"/"No" per yes/no request, the option letter per multiple-choice one."""
        items = [self._item(r.args[0], r.args[2], r.args[3], r.args[4], r.args[5]) for r in requests]
        answers = []
        for item, (scores, margins, preds) in zip(items, self._score(items), strict=True):
            if item.letters is None:
                answers.append("Yes" if int(preds[0]) == 1 else "No")
            else:
                answers.append(item.letters[max(range(len(scores)), key=lambda j: (scores[j], margins[j]))])
        hook = getattr(self, "cache_hook", None)  # lmms-eval's response cache
        for r, a in zip(requests, answers, strict=True):
            if hook is not None:
                hook.add_partial("generate_until", (r.args[0], r.args[1]), a)
        return answers

    def loglikelihood(self, requests: Sequence[Any]) -> list[tuple[float, bool]]:
        """(-log p, greedy) per (context, continuation): p the SN probability of the continuation."""
        items = []
        for r in requests:
            context, target, visual, doc_id, task, split = r.args
            cont = target if isinstance(target, str) else target(self._doc(task, split, doc_id))
            items.append(self._item(context, visual, doc_id, task, split, continuation=str(cont)))
        out = []
        for item, (scores, _, preds) in zip(items, self._score(items), strict=True):
            yes = item.target if item.target is not None else 1
            p = float(scores[0]) if yes == 1 else 1.0 - float(scores[0])
            out.append((-math.log(min(max(p, EPS), 1.0 - EPS)), int(preds[0]) == yes))
        return out

    def generate_until_multi_round(self, requests: Sequence[Any]) -> list[str]:
        raise NotImplementedError(f"{LIBRARY_NAME} answers one yes/no or multiple-choice question per image from "
                                  "its Super Neurons; multi-round tasks need the model's own lmms-eval backend")

    # ---- requests -> binary questions ----------------------------------------------------------
    def _doc(self, task: str, split: str, doc_id: Any) -> Any:
        try:
            return self.task_dict[task][split][doc_id]
        except (KeyError, IndexError, TypeError):
            raise DataError(f"lmms-eval gave no document {doc_id} of task {task!r} split {split!r}") from None

    def _item(self, context: str, visual: Callable[[Any], Any], doc_id: Any, task: str, split: str,
              continuation: str | None = None) -> _Item:
        where = f"task {task!r} doc {doc_id}"

        def image() -> Any:
            vis = visual(self._doc(task, split, doc_id))
            vis = vis if isinstance(vis, list | tuple) else [vis]
            if len(vis) != 1 or not hasattr(vis[0], "convert"):
                raise DataError(f"{where}: {LIBRARY_NAME} answers questions about one image, got "
                                f"{len(vis)} visual(s) ({', '.join(type(v).__name__ for v in vis) or 'none'}); "
                                "use an image task")
            return vis[0]

        mcq = parse_mcq(context)
        if continuation is None:
            if mcq is None:
                return _Item(task, where, [context], image)
            stem, options = mcq
            return _Item(task, where, [mcq_question(stem, o) for _, o in options], image, [k for k, _ in options])
        if (answer := _answer_word(continuation)) is not None:
            return _Item(task, where, [context], image, target=answer)
        stem, option = context, continuation.strip()
        if mcq is not None:
            stem = mcq[0]
            option = dict(mcq[1]).get(option.strip("()."), option)  # a letter names its option
        return _Item(task, where, [mcq_question(stem, option)], image)

    # ---- the SNs -------------------------------------------------------------------------------
    def _check_format(self, item: _Item) -> None:
        fmt = self.clf.question_format
        if fmt is None:
            if "" not in self._warned:
                self._warned.add("")
                warnings.warn(f"the classifier records no question format, so {LIBRARY_NAME} cannot check that task "
                              f"{item.task!r} asks its questions the way the probing set did (SNs are "
                              "prompt-sensitive)", UserWarning, stacklevel=3)
            return
        bad = next((q for q in item.questions if not fmt.matches(q)), None)
        if bad is not None and item.task not in self._warned:
            self._warned.add(item.task)
            warnings.warn(f"task {item.task!r} asks {bad!r}, but the classifier's Super Neurons were found on "
                          f"questions of the form {fmt} (SNs are prompt-sensitive: expect worse answers); make "
                          "the task's prompt match, e.g. lmms_eval_specific_kwargs: {superneurons: {pre_prompt: "
                          "'', post_prompt: ''}}", UserWarning, stacklevel=3)

    def _score(self, items: Sequence[_Item]) -> list[tuple[list[float], list[float], list[int]]]:
        """Per item: SN score in [0, 1], mean SN margin and answer (1/0) of each of its questions."""
        flat = [(i, q) for i, item in enumerate(items) for q in item.questions]
        scores: list[float] = []
        margins: list[float] = []
        preds: list[int] = []
        sns = self.clf.sns
        with progress(f"{LIBRARY_NAME}: SNs, exit after layer {self.clf.exit_layer}", len(flat)) as advance:
            for lo in range(0, len(flat), CHUNK):
                chunk = flat[lo:lo + CHUNK]
                images: dict[int, Any] = {}
                samples = []
                for j, (i, q) in enumerate(chunk):
                    if i not in images:
                        self._check_format(items[i])
                        images[i] = items[i].image()
                    samples.append(Sample(id=f"{items[i].where} q{lo + j}", image=images[i], question=q))
                acts = self.clf.sn_activations(self.vlm, samples, batch_size=self.batch_size, strict=self.strict)
                with torch.no_grad():
                    scores += cascade_score(acts, sns.alpha, sns.rule, self.aggregation, self.temperature).tolist()
                    margins += sn_margins(acts, sns.alpha, sns.rule).mean(dim=1).tolist()
                    preds += self.clf.predict_from_acts(acts, self.aggregation).preds.tolist()
                advance(len(chunk))
        out: list[tuple[list[float], list[float], list[int]]] = [([], [], []) for _ in items]
        for (i, _), s, m, p in zip(flat, scores, margins, preds, strict=True):
            out[i][0].append(s)
            out[i][1].append(m)
            out[i][2].append(p)
        return out


def _build_class() -> type:
    try:
        from lmms_eval.api.model import lmms
    except ImportError:
        raise ImportError(f"{__name__}.{CLASS_NAME} subclasses lmms-eval's `lmms`: {LMMS_EVAL_EXTRA}") from None

    class SuperNeuronsLMM(SuperNeuronsBackend, lmms):
        __doc__ = SuperNeuronsBackend.__doc__

    SuperNeuronsLMM.__module__, SuperNeuronsLMM.__qualname__ = __name__, CLASS_NAME
    return SuperNeuronsLMM


def __getattr__(name: str) -> Any:
    """`SuperNeuronsLMM`, built on first access (it needs lmms-eval, which the core install does not)."""
    if name != CLASS_NAME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    cls = globals()[CLASS_NAME] = _build_class()
    return cls
