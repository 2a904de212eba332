"""The `prompts` experiment: robustness to the prompt's key word (paper appendix Tab. 5).

The question's key word (InstaOrder's "obstructing" in the paper) is replaced, in the probing and
the validation set alike, by each user-given alternative (e.g. hiding, occluding) and by random
strings of 3-10 lower-case letters (a new one per question). For every wording, SNs are found on
the reworded probing set and scored on it and on the reworded validation set, beside the model's
own answers to the same questions.

The key word is matched as a whole word, case-sensitively; questions without it stay as they are
(how many were reworded is in the result's metadata).
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from superneurons.errors import DataError
from superneurons.experiments._common import Dataset, ExperimentResult, finish, labels_of
from superneurons.experiments.workspace import Workspace, sn_row

if TYPE_CHECKING:
    from superneurons.data.samples import Sample
    from superneurons.models.base import VLM

RANDOM = "random"
RANDOM_LENGTH = (3, 10)


def random_word(rng: random.Random, lo: int = RANDOM_LENGTH[0], hi: int = RANDOM_LENGTH[1]) -> str:
    """A random string of lo..hi lower-case letters."""
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(lo, hi)))


def unknown_to_tokenizer(vlm: VLM, word: str) -> bool:
    """True if the tokenizer turns `word` (as it appears mid-sentence) into its unknown token."""
    unk = vlm.tokenizer.unk_token_id
    return unk is not None and unk in vlm.tokenizer.encode(" " + word, add_special_tokens=False)


def replace_word(samples: Sequence[Sample], word: str, replacement: str | Callable[[], str]) -> tuple[list[Sample], int]:
    """Samples with `word` (whole word, case-sensitive) replaced in the question; and how many changed.

    `replacement` is a string or a function called once per question (e.g. a random string).
    Ids, images and labels are kept; `meta["reworded"]` records the change.
    """
    if not word or not word.strip():
        raise DataError("the key word to replace is empty; pass --word WORD")
    pattern = re.compile(rf"\b{re.escape(word)}\b")
    out, changed = [], 0
    for s in samples:
        new = replacement() if callable(replacement) else replacement
        q, hits = pattern.subn(new, s.question)
        changed += hits > 0
        out.append(replace(s, question=q, meta={**s.meta, "reworded": {word: new}}) if hits else s)
    return out, changed


def run(ws: Workspace, datasets: Sequence[Dataset], out_dir: str | Path | None = None, word: str = "obstructing",
        alternatives: Sequence[str] = ("hiding", "occluding"), random_strings: bool = True,
        model_on_probe: bool = True) -> ExperimentResult:
    """Model vs SNs accuracy/precision/recall/F1 on probe and validation for each wording of `word`."""
    o = ws.options
    variants = [word, *[a for a in alternatives if a != word]] + ([RANDOM] if random_strings else [])
    rows: list[dict[str, Any]] = []
    reworded: dict[str, Any] = {}
    for ds in datasets:
        base = {"probe": ds.need("probe", "prompts"), "val": ds.need("val", "prompts")}
        for v in variants:
            sets, counts = {}, {}
            for split, samples in base.items():
                rng = random.Random(f"prompts/{o.seed}/{ds.name}/{split}")
                rep: str | Callable[[], str] = (lambda rng=rng: random_word(rng)) if v == RANDOM else v
                sets[split], counts[split] = replace_word(samples, word, rep)
            if counts["probe"] == 0 and counts["val"] == 0:
                raise DataError(f"dataset {ds.name!r}: no question contains the key word {word!r} (e.g. "
                                f"{base['val'][0].question!r}); pass the word as it appears with --word")
            reworded[f"{ds.name}/{v}"] = {k: f"{c}/{len(base[k])}" for k, c in counts.items()}
            stores = {split: ws.store(s) for split, s in sets.items()}
            fits = ws.fit_both(stores["probe"])
            for split, samples in sets.items():
                y = labels_of(samples)
                cols = {"dataset": ds.name, "word": v, "split": split}
                if split == "val" or model_on_probe:
                    rows.append(ws.model_row(samples, **cols))
                rows += [sn_row(fit, stores[split], y, **cols) for fit in fits.values()]
    notes = [f"'{RANDOM}': a random string of {RANDOM_LENGTH[0]}-{RANDOM_LENGTH[1]} letters per question; SNs are "
             "found again on each reworded probing set."]
    unknown = [v for v in variants if v != RANDOM and unknown_to_tokenizer(ws.vlm, v)]
    if unknown:
        notes.append(f"the tokenizer maps {', '.join(repr(u) for u in unknown)} to its unknown token, so those "
                     "wordings read the same to the model")
    result = ExperimentResult(
        name="prompts", title=f"Prompt robustness: {word!r} replaced", paper="App. Tab. 5",
        columns=["dataset", "word", "split", "method", "accuracy", "precision", "recall", "f1", "yes_ratio"],
        rows=rows, meta={"model": ws.vlm.name_or_path, "word": word, "variants": variants, "reworded": reworded,
                         "options": vars(o), "notes": notes})
    return finish(result, out_dir)
