"""config.py: one validated settings object per step; bad values name the field and the valid choices."""

from __future__ import annotations

import pytest

from superneurons.config import (
    CaptureConfig,
    InferConfig,
    ScoreConfig,
    SelectConfig,
    configure,
    split_options,
)
from superneurons.constants import MAX_NEW_TOKENS, SNT_DEPTH, SNT_STEP
from superneurons.errors import ConfigError, DataError, StoreError


def test_defaults_are_the_papers_protocol():
    c, s, sel, inf = CaptureConfig(), ScoreConfig(), SelectConfig(), InferConfig()
    assert (c.token, c.max_new_tokens, c.exit_layer, c.dtype) == ("first", MAX_NEW_TOKENS, None, "float16")
    assert (s.alpha, s.polarity, s.per_neuron_alpha) == (0.0, "positive", False)
    assert (sel.metric, sel.step, sel.depth, sel.snt, sel.top_k) == ("accuracy", SNT_STEP, SNT_DEPTH, None, None)
    assert (inf.aggregation, inf.cascade_margin, inf.strict) == (None, None, True)


@pytest.mark.parametrize(("cls", "kwargs", "message"), [
    (CaptureConfig, {"token": "middle"}, r"token 'middle' is not one of first, last"),
    (CaptureConfig, {"dtype": "int8"}, r"dtype 'int8' is not one of float16, bfloat16, float32"),
    (CaptureConfig, {"batch_size": 0}, r"batch_size=0; use a positive batch size"),
    (CaptureConfig, {"shard_size": -1}, r"shard_size=-1"),
    (CaptureConfig, {"max_new_tokens": 0}, r"max_new_tokens=0"),
    (CaptureConfig, {"token": "last", "exit_layer": 1}, r"exit_layer needs token 'first'"),
    (CaptureConfig, {"token": "last", "prefix_reuse": True}, r"prefix reuse needs token 'first'"),
    (CaptureConfig, {"layers": ["a"]}, r"layer indices"),
    (ScoreConfig, {"metrics": ("accuracy", "auc")}, r"metric 'auc' is not one of accuracy, precision, recall, f1"),
    (ScoreConfig, {"metrics": ()}, r"metrics is empty"),
    (ScoreConfig, {"polarity": "negative"}, r"polarity 'negative' is not one of positive, both"),
    (ScoreConfig, {"alpha": float("nan")}, r"alpha=nan; use a finite threshold"),
    (ScoreConfig, {"chunk_layers": 0}, r"chunk_layers=0"),
    (SelectConfig, {"metric": "auc"}, r"select: metric 'auc'"),
    (SelectConfig, {"snt": 92}, r"snt=92 is outside \[0.0, 1.0\]; SNt is a score fraction"),
    (SelectConfig, {"top_k": 0}, r"top_k=0; ask for at least one neuron"),
    (SelectConfig, {"step": 0}, r"step=0"),
    (InferConfig, {"aggregation": "max"}, r"aggregation 'max' is not one of mean, vote, fraction"),
    (InferConfig, {"cascade_margin": 0.7}, r"cascade_margin=0.7 is outside \[0.0, 0.5\]"),
    (InferConfig, {"batch_size": 0}, r"infer: batch_size=0"),
    (InferConfig, {"truncate": True, "cascade_margin": 0.2}, r"use one of them"),
])
def test_bad_values_name_the_field_and_the_choices(cls, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        cls(**kwargs)


def test_config_errors_are_caught_as_the_steps_error_types():
    """Capture options used to raise StoreError, selection options DataError: callers keep working."""
    for exc_type in (ConfigError, DataError, StoreError, ValueError):
        with pytest.raises(exc_type):
            CaptureConfig(batch_size=0)


def test_configure_and_split_options():
    base = CaptureConfig(exit_layer=3)
    assert configure(CaptureConfig, base, {}) is base
    assert configure(CaptureConfig, base, {"batch_size": 2}) == CaptureConfig(exit_layer=3, batch_size=2)
    assert configure(CaptureConfig, None, {"layers": [2, 0]}).layers == (2, 0)
    with pytest.raises(ConfigError, match=r"CaptureConfig has no option 'snt'; options: .*batch_size"):
        configure(CaptureConfig, None, {"snt": 0.9})
    sel, score = split_options({"metric": "f1", "alpha": 0.5, "top_k": 3}, SelectConfig, ScoreConfig)
    assert sel == {"metric": "f1", "top_k": 3} and score == {"alpha": 0.5}
    with pytest.raises(ConfigError, match=r"unknown option 'bogus'; options: .*alpha.*top_k"):
        split_options({"bogus": 1}, SelectConfig, ScoreConfig)
