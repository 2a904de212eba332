"""The model's own answers, the baselines Super Neurons are compared with (paper Sec. 4.2).

- Generation: greedy decoding with the paper's settings (`max_new_tokens=128`, temperature 0 i.e.
  `do_sample=False`, one beam, no stop strings), batched with left padding, then parsed:
  - `parse_pope`: the rule-based POPE evaluation rule: keep the text up to the first '.', drop
    commas, split on spaces; if a word is "No", "no" or "not" the answer is no, otherwise yes.
    It always returns an answer (an empty or off-topic reply counts as yes).
  - `parse_strict`: the first word (case and punctuation ignored) must be yes or no; anything else
    is `UNPARSED` (-1), reported as its own count by `superneurons.metrics.binary_metrics`.
- First token: one prefill forward, then compare the logits of the yes and no tokens at the
  first generated position. Every case/space variant the tokenizer has (`VLM.yes_no_margin`)
  is pooled with logsumexp (the log of their total unnormalised probability); yes wins if its
  pooled logit is strictly higher (a tie answers no, as `aggregation.vote`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import closing
from typing import TYPE_CHECKING

import torch

from superneurons.activations.prefill import greedy_generate, prepared_batches
from superneurons.constants import MAX_NEW_TOKENS, PARSERS
from superneurons.errors import DataError
from superneurons.scoring.metrics import UNPARSED

if TYPE_CHECKING:
    from superneurons.data.samples import Sample
    from superneurons.models.base import VLM
_NO_WORDS = ("No", "no", "not")
_STRIP = re.compile(r"^[^\w]+|[^\w]+$")


def parse_pope(text: str) -> int:
    """POPE's rule-based answer parser: 1 (yes) or 0 (no).

    >>> [parse_pope(t) for t in ("Yes, there is a dog.", "No.", "There is not a cat in the image.")]
    [1, 0, 0]
    """
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return 0 if any(w in words for w in _NO_WORDS) else 1


def parse_strict(text: str) -> int:
    """1 if the reply's first word is yes, 0 if no (any case, punctuation ignored), else -1 (unparsed).

    >>> [parse_strict(t) for t in ("Yes, there is.", " no", "I cannot tell")]
    [1, 0, -1]
    """
    words = text.split()
    first = _STRIP.sub("", words[0]).lower() if words else ""
    return {"yes": 1, "no": 0}.get(first, UNPARSED)


def parse_answers(texts: Sequence[str], parser: str = "pope") -> list[int]:
    """Parse generated replies with `parser` ("pope" or "strict")."""
    if parser not in PARSERS:
        raise DataError(f"parser {parser!r} is not one of {', '.join(PARSERS)}")
    fn = parse_pope if parser == "pope" else parse_strict
    return [fn(t) for t in texts]


def generate_answers(vlm: VLM, samples: Sequence[Sample], max_new_tokens: int = MAX_NEW_TOKENS,
                     batch_size: int = 8) -> list[str]:
    """Greedy replies (`do_sample=False`, `num_beams=1`) to each sample, new tokens only, decoded."""
    if not samples:
        raise DataError("generate_answers() got no samples")
    new: list[torch.Tensor] = []
    with closing(prepared_batches(vlm, samples, batch_size)) as ready:  # decoded after: one tokenizer user at a time
        for _, batch in ready:
            new.append(greedy_generate(vlm, batch, max_new_tokens))
    texts: list[str] = []
    for tokens in new:
        texts.extend(vlm.tokenizer.batch_decode(tokens, skip_special_tokens=True))
    return texts


def first_token_margins(vlm: VLM, samples: Sequence[Sample], batch_size: int = 8) -> torch.Tensor:
    """float32 [N]: logsumexp(yes-token logits) - logsumexp(no-token logits) at the first answer token."""
    if not samples:
        raise DataError("first_token_margins() got no samples")
    keep_one = "logits_to_keep" in vlm.forward_keys()
    out: list[torch.Tensor] = []
    kwargs = {"logits_to_keep": 1} if keep_one else {}
    vlm.yes_no_token_ids()  # the tokenizer, once, before a worker thread uses it
    with closing(prepared_batches(vlm, samples, batch_size)) as ready:
        for _, batch in ready:
            with torch.inference_mode():
                logits = vlm.model(**batch, use_cache=False, **kwargs).logits[:, -1].float()
            out.append(vlm.yes_no_margin(logits).cpu())
    return torch.cat(out)
