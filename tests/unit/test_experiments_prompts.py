"""experiments/prompts.py: whole-word replacement, random 3-10 letter strings, the experiment's rows."""

from __future__ import annotations

import random

import pytest
from experiment_fixtures import load_exp_vlm, probe_val, with_questions

from superneurons.data import Sample
from superneurons.errors import DataError
from superneurons.experiments import replace_word, run_experiment
from superneurons.experiments._common import ExperimentOptions
from superneurons.experiments.prompts import random_word


def test_replace_whole_word_only():
    s = [Sample("a", "x.png", "Is the dog obstructing the hotdog ? obstructing.", "yes"),
         Sample("b", "x.png", "Is the dogs near ?", "no")]
    out, n = replace_word(s, "dog", "cat")
    assert n == 1 and out[0].question == "Is the cat obstructing the hotdog ? obstructing."
    assert out[1] is s[1] and out[0].id == "a" and out[0].label == "yes"
    out, _ = replace_word(s, "obstructing", "hiding")
    assert out[0].question.count("hiding") == 2 and out[0].meta["reworded"] == {"obstructing": "hiding"}


def test_random_words():
    rng = random.Random(0)
    words = [random_word(rng) for _ in range(300)]
    assert all(3 <= len(w) <= 10 and w.isalpha() and w.islower() for w in words)
    assert {len(w) for w in words} == set(range(3, 11)) and len(set(words)) > 250


def test_prompts_experiment_end_to_end(tiny_llava_dir, tmp_path):
    vlm = load_exp_vlm(tiny_llava_dir)
    probe, val = probe_val(tmp_path, 12, 8)
    q = "Is the red cube obstructing the blue sphere ? Answer using a single word ."
    probe, val = with_questions(probe, q), with_questions(val, q)
    res = run_experiment("prompts", vlm, probe=probe, val=val, out_dir=tmp_path / "out", word="obstructing",
                         alternatives=("occluding", "hiding"), options=ExperimentOptions(max_new_tokens=2))
    assert res.meta["variants"] == ["obstructing", "occluding", "hiding", "random"]
    assert any("maps 'hiding' to its unknown token" in n for n in res.meta["notes"])  # not in the tiny vocabulary
    assert res.meta["reworded"]["data/random"] == {"probe": "12/12", "val": "8/8"}
    keys = [(r["word"], r["split"], r["method"]) for r in res.rows]
    assert len(keys) == 4 * 2 * 3 and ("random", "val", "SNs (vote)") in keys
    with pytest.raises(DataError, match="no question contains the key word 'hiding'"):
        run_experiment("prompts", vlm, probe=probe, val=val, word="hiding", alternatives=(),
                       options=ExperimentOptions(max_new_tokens=2))
