"""Multiple-choice datasets (A-OKVQA, ScienceQA) as binary questions, and MCQ-aware balancing.

Each MCQ becomes one yes/no question per option (appendix Tab. 1):
"{q} Is it {a_i}? Answer with yes or no." with label yes for the correct option. Every binary
sample keeps `meta["question_id"]` and `meta["option_index"]` so question-level accuracy can be
computed later (`superneurons.mcq_eval`).

Published layouts followed:

- A-OKVQA (allenai/aokvqa README, `load_aokvqa` / `get_coco_path`): `aokvqa_v1p0_{split}.json`, a
  list of `{"question_id", "image_id", "question", "choices", "correct_choice_idx",
  "direct_answers", "rationales", ...}`; images are COCO 2017 `{split}2017/{image_id:012d}.jpg`.
  `--root` holds the json (or `aokvqa/`) and the COCO folder (`{split}2017/` or `coco/{split}2017/`).
- ScienceQA (lupantech/ScienceQA, `tools/download.sh`): `problems.json` (pid -> {"question",
  "choices", "answer", "hint", "image", "split", "subject", "category", ...}) and
  `pid_splits.json` ({"train": [pid...], "val": [...], "test": [...]}), images at
  `images/{split}/{pid}/image.png` (also accepted: `{split}/{pid}/image.png`). Questions without
  an image (`"image": null`) are filtered.
- ScienceQA parquet (derek-thomas/ScienceQA `data/{train,validation,test}-*.parquet`,
  lmms-lab/ScienceQA `ScienceQA-IMG/...`): columns `image` (Hugging Face Image cell or null),
  `question`, `choices`, `answer` (index), `hint`, ...; images are written to `image_dir`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from superneurons.data._common import (
    SPLITS,
    ImageChecker,
    LoadStats,
    check_root,
    check_split,
    default_image_dir,
    find_dir,
    find_file,
    find_parquet,
    finish,
    image_bytes,
    read_json,
    read_parquet_rows,
    require_keys,
    save_image_bytes,
    wrong_format,
)
from superneurons.data.samples import NO, YES, Sample
from superneurons.errors import DataError

MCQ_TEMPLATE = "{q} Is it {a}? Answer with yes or no."
AOKVQA, SCIENCEQA = "aokvqa", "scienceqa"
AOKVQA_EXPECTED = ('A-OKVQA annotations: a JSON list of {"question_id", "image_id", "question", "choices", '
                   '"correct_choice_idx"} (aokvqa_v1p0_{split}.json)')
SQA_PROBLEMS_EXPECTED = ('ScienceQA problems.json: {pid: {"question", "choices", "answer", "image", '
                         '"split", ...}}')
SQA_SPLITS_EXPECTED = 'ScienceQA pid_splits.json: {"train": [pid, ...], "val": [...], "test": [...]}'
SQA_SPLITS = ("train", "val", "test")
SQA_PARQUET_PREFIX = {"train": ("train",), "val": ("validation", "val"), "test": ("test",)}
SQA_PARQUET_COLUMNS = ("image", "question", "choices", "answer")


def mcq_question(question: str, choice: str) -> str:
    """The binary prompt for one option: "{q} Is it {a_i}? Answer with yes or no."."""
    return MCQ_TEMPLATE.format(q=question.strip(), a=str(choice).strip().rstrip("."))


def expand_mcq(source: str, qid: str, image: Path, question: str, choices: Any, correct: Any, where: str,
               meta: dict[str, Any] | None = None) -> list[Sample]:
    """One yes/no `Sample` per option of a multiple-choice question (yes for the correct one)."""
    if not isinstance(choices, (list, tuple)) or len(choices) < 2:
        raise DataError(f"{source}: {where}: choices is {choices!r}; expected a list of at least two options")
    if isinstance(correct, bool) or not isinstance(correct, int) or not 0 <= correct < len(choices):
        raise DataError(f"{source}: {where}: correct option index {correct!r} is not in 0..{len(choices) - 1}")
    out = []
    for i, choice in enumerate(choices):
        m = {"source": source, "question_id": qid, "option_index": i, "num_options": len(choices),
             "correct_index": correct, "choice": str(choice), **(meta or {})}
        out.append(Sample(id=f"{source}-{qid}-{i}", image=image, question=mcq_question(question, str(choice)),
                          label=YES if i == correct else NO, meta=m))
    return out


# --- A-OKVQA -------------------------------------------------------------------------------------

def load_aokvqa(root: str | Path, split: str = "val", *, image_root: str | Path | None = None,
                skip_missing: bool = False, stats: LoadStats | None = None) -> list[Sample]:
    """A-OKVQA multiple-choice questions as binary questions (one per choice).

    >>> samples = load_aokvqa("data/aokvqa", "train")  # doctest: +SKIP
    """
    stats = stats if stats is not None else LoadStats()
    check_split(split, SPLITS, AOKVQA, "the A-OKVQA test split has no public answers")
    base = check_root(root, AOKVQA)
    path = find_file(base, [f"aokvqa_v1p0_{split}.json", f"aokvqa/aokvqa_v1p0_{split}.json"], AOKVQA,
                     AOKVQA_EXPECTED.replace("{split}", split))
    data = read_json(path, AOKVQA)
    if not (isinstance(data, list) and (not data or isinstance(data[0], dict) and "choices" in data[0])):
        raise wrong_format(path, AOKVQA, AOKVQA_EXPECTED, data)
    folder = find_dir(base if base.is_dir() else path.parent,
                      [f"{split}2017", f"coco/{split}2017", f"images/{split}2017", f"../coco/{split}2017",
                       f"../{split}2017"], image_root, AOKVQA,
                      f"the COCO 2017 images ({split}2017/{{image_id:012d}}.jpg)")
    images = ImageChecker(AOKVQA, skip_missing, stats)
    samples: list[Sample] = []
    for r, rec in enumerate(data):
        where = f"{path.name} record {r}"
        rec = require_keys(rec, ("question_id", "image_id", "question", "choices"), where, AOKVQA_EXPECTED)
        qid = str(rec["question_id"])
        where = f"{where} (question_id {qid})"
        if "correct_choice_idx" not in rec:
            raise DataError(f"{AOKVQA}: {where}: no correct_choice_idx; this file has no answers (the test "
                            "split?) - use the train or val annotations")
        image = folder / f"{int(rec['image_id']):012d}.jpg"
        if not images.ok(image, where, len(rec["choices"]) if isinstance(rec["choices"], list) else 1):
            continue
        samples.extend(expand_mcq(AOKVQA, qid, image, str(rec["question"]), rec["choices"],
                                  rec["correct_choice_idx"], where, {"image_id": rec["image_id"]}))
    return finish(samples, stats, AOKVQA, path)


# --- ScienceQA -----------------------------------------------------------------------------------

def load_scienceqa(root: str | Path, split: str = "val", *, image_root: str | Path | None = None,
                   image_dir: str | Path | None = None, skip_missing: bool = False,
                   stats: LoadStats | None = None) -> list[Sample]:
    """ScienceQA image questions as binary questions, from the official json or the HF parquet.

    `meta` keeps pid (`question_id`), option, hint, subject and the problem's `category`.

    >>> samples = load_scienceqa("data/scienceqa", "train")  # doctest: +SKIP
    """
    stats = stats if stats is not None else LoadStats()
    check_split(split, SQA_SPLITS, SCIENCEQA)
    base = check_root(root, SCIENCEQA)
    if base.suffix == ".parquet" or (base.is_dir() and not (base / "problems.json").is_file()
                                     and find_parquet(base, SQA_PARQUET_PREFIX[split], ("data", "ScienceQA-IMG"),
                                                      SCIENCEQA)):
        return _scienceqa_parquet(base, split, image_dir, stats)
    problems_path = find_file(base, ["problems.json", "data/scienceqa/problems.json"], SCIENCEQA,
                              SQA_PROBLEMS_EXPECTED + " with pid_splits.json next to it, or the parquet files")
    splits_path = problems_path.parent / "pid_splits.json"
    if not splits_path.is_file():
        raise DataError(f"{SCIENCEQA}: {splits_path} does not exist; expected {SQA_SPLITS_EXPECTED} next to "
                        f"{problems_path.name}")
    problems = read_json(problems_path, SCIENCEQA)
    first = next(iter(problems.values()), None) if isinstance(problems, dict) else None
    if not (isinstance(first, dict) and "choices" in first):
        raise wrong_format(problems_path, SCIENCEQA, SQA_PROBLEMS_EXPECTED, problems)
    pid_splits = read_json(splits_path, SCIENCEQA)
    if not isinstance(pid_splits, dict) or not isinstance(pid_splits.get(split), list):
        if isinstance(pid_splits, dict) and all(isinstance(v, list) for v in pid_splits.values()):
            raise DataError(f"{SCIENCEQA}: {splits_path} has no {split!r} list (has {', '.join(pid_splits)}); "
                            f"expected {SQA_SPLITS_EXPECTED}")
        raise wrong_format(splits_path, SCIENCEQA, SQA_SPLITS_EXPECTED, pid_splits)
    folder = find_dir(problems_path.parent, [f"images/{split}", split], image_root, SCIENCEQA,
                      f"the ScienceQA {split} images (images/{split}/{{pid}}/image.png)")
    images = ImageChecker(SCIENCEQA, skip_missing, stats)
    samples: list[Sample] = []
    for pid in pid_splits[split]:
        pid = str(pid)
        where = f"{problems_path.name} problem {pid}"
        if pid not in problems:
            raise DataError(f"{SCIENCEQA}: {splits_path.name} lists pid {pid} under {split!r} but {where} does "
                            "not exist; problems.json and pid_splits.json must come from the same release")
        prob = require_keys(problems[pid], ("question", "choices", "answer", "image"), where, SQA_PROBLEMS_EXPECTED)
        if not prob["image"]:
            stats.filter("text-only question (no image)")
            continue
        image = folder / pid / str(prob["image"])
        if not images.ok(image, where, len(prob["choices"]) if isinstance(prob["choices"], list) else 1):
            continue
        samples.extend(expand_mcq(SCIENCEQA, pid, image, str(prob["question"]), prob["choices"], prob["answer"],
                                  where, _sqa_meta(prob)))
    return finish(samples, stats, SCIENCEQA, problems_path)


def _sqa_meta(prob: dict[str, Any]) -> dict[str, Any]:
    return {k: prob.get(k) for k in ("hint", "subject", "topic", "category", "skill", "grade")}


def _scienceqa_parquet(base: Path, split: str, image_dir: str | Path | None, stats: LoadStats) -> list[Sample]:
    files = find_parquet(base, SQA_PARQUET_PREFIX[split], ("data", "ScienceQA-IMG"), SCIENCEQA)
    rows = read_parquet_rows(files, SQA_PARQUET_COLUMNS, SCIENCEQA)
    out_dir = Path(image_dir) if image_dir is not None else default_image_dir(base, SCIENCEQA, split)
    samples: list[Sample] = []
    for r, row in enumerate(rows):
        where = f"{SCIENCEQA} parquet {split} row {r}"
        data = image_bytes(row["image"], where)
        if data is None:
            stats.filter("text-only question (no image)")
            continue
        qid = f"{split}-{r}"
        image = save_image_bytes(data, out_dir, f"scienceqa_{split}_{r}", where)
        choices = list(row["choices"]) if row["choices"] is not None else None
        answer = int(row["answer"]) if row["answer"] is not None else None
        samples.extend(expand_mcq(SCIENCEQA, qid, image, str(row["question"]), choices, answer, where,
                                  _sqa_meta(row)))
    return finish(samples, stats, SCIENCEQA, base)


# --- MCQ-aware sampling --------------------------------------------------------------------------

def group_questions(samples: Sequence[Sample]) -> dict[str, list[Sample]]:
    """Binary samples grouped by `meta["question_id"]` (first-seen order), options sorted by index."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        if "question_id" not in s.meta or "option_index" not in s.meta:
            raise DataError(f"sample {s.id!r} has no meta question_id/option_index; MCQ balancing needs the "
                            "binary questions made by the A-OKVQA / ScienceQA loaders")
        groups.setdefault(str(s.meta["question_id"]), []).append(s)
    for opts in groups.values():
        opts.sort(key=lambda s: int(s.meta["option_index"]))
    return groups


def balanced_mcq_sample(samples: Sequence[Sample], n: int | None, seed: int = 0) -> tuple[list[Sample], str]:
    """A class-balanced subset of MCQ binary samples that keeps as many whole questions as it can.

    Every question brings exactly one yes (its correct option), so a set with n/2 yes uses n/2
    questions and must keep only n/2 of their distractors. Questions are drawn at random
    (seeded); fewest-option questions are kept whole first, the rest keep their correct option
    and the distractors the budget still allows (chosen at random). Returns the samples (grouped
    by question, options in order) and a sentence saying what was done.
    """
    rng = random.Random(seed)
    groups = [opts for opts in group_questions(samples).values()
              if sum(s.label == YES for s in opts) == 1 and any(s.label == NO for s in opts)]
    if not groups:
        raise DataError("cannot balance: no question has exactly one correct option and a distractor")
    rng.shuffle(groups)
    per_class = len(groups) if n is None else min(n // 2, len(groups))
    if per_class == 0:
        raise DataError(f"balanced MCQ sample with n={n} keeps no question; ask for n >= 2")
    chosen = groups[:per_class]
    budget = per_class
    keep_no: dict[int, int] = {}
    for g in sorted(range(per_class), key=lambda g: len(chosen[g])):
        distractors = len(chosen[g]) - 1
        keep_no[g] = min(distractors, budget)
        budget -= keep_no[g]
    out: list[Sample] = []
    whole = partial = yes_only = 0
    for g, opts in enumerate(chosen):
        no = [s for s in opts if s.label == NO]
        kept_no = set(id(s) for s in rng.sample(no, keep_no[g]))
        out.extend(s for s in opts if s.label == YES or id(s) in kept_no)
        if keep_no[g] == len(no):
            whole += 1
        elif keep_no[g]:
            partial += 1
        else:
            yes_only += 1
    note = (f"MCQ balancing kept {per_class} questions: {whole} whole, {partial} with some distractors dropped, "
            f"{yes_only} as the correct option only ({per_class} yes / {per_class} no)")
    if n is not None and n // 2 > len(groups):
        note += f"; n={n} asked for more than the {len(groups)} usable questions allow"
    return out, note


def subsample_mcq(samples: Sequence[Sample], n: int, seed: int = 0) -> list[Sample]:
    """At most `n` samples made of whole questions drawn at random (seeded); a question that no
    longer fits is passed over for a smaller one."""
    groups = list(group_questions(samples).values())
    random.Random(seed).shuffle(groups)
    out: list[Sample] = []
    for opts in groups:
        if len(out) + len(opts) > n:
            continue
        out.extend(opts)
    return out
