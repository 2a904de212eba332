"""The lmms-eval backend's logic, without lmms-eval (the core install does not have it).

Requests here are stand-ins for `lmms_eval.api.instance.Instance`: objects with its `.args`
tuple, (context, gen_kwargs | continuation, doc_to_visual, doc_id, task, split), which is all
the backend reads; `task_dict` is filled the way lmms-eval's evaluator fills it. The real
lmms-eval run (entry point, CLI, tasks) is `tests/integrations/test_lmms_eval.py`, run by
`.ci/run` in its own venv.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from superneurons.data.mcq import mcq_question
from superneurons.data.samples import Sample, load_samples
from superneurons.errors import ConfigError, DataError
from superneurons.inference.aggregation import sn_margins
from superneurons.inference.classifier import fit_classifier
from superneurons.integrations import lmms_eval as backend_module
from superneurons.integrations.lmms_eval import SuperNeuronsBackend, parse_mcq

HAVE_LMMS_EVAL = importlib.util.find_spec("lmms_eval") is not None
SQA = ("Context: a photo.\nWhat is in the image?\nA. dog\nB. cat\nC. red car\n"
       "Answer with the option's letter from the given choices directly.")


def _req(*args):
    return SimpleNamespace(args=args)


def _visual(doc):
    return [Image.open(doc["image"]).convert("RGB")]


@pytest.fixture(scope="module")
def setup(tiny_llava, tiny_llava_dir, tmp_path_factory):
    from conftest import write_dataset
    from superneurons.activations.probing import probe

    root = tmp_path_factory.mktemp("lmms")
    store = probe(tiny_llava, load_samples(write_dataset(root, 16, name="probe.jsonl", seed=5)), root / "acts",
                  dtype="float32", progress=False)
    clf = fit_classifier(store, top_k=5, max_layer=2, aggregation="vote").classifier
    clf.save(root / "clf")
    samples = load_samples(write_dataset(root, 6, name="test.jsonl", seed=6))
    be = SuperNeuronsBackend(classifier=str(root / "clf"), pretrained=str(tiny_llava_dir), truncate=True,
                             batch_size="4", device="cpu")
    be.task_dict = {"t": {"test": [{"image": str(s.image), "question": s.question} for s in samples]}}
    return clf, be, samples, root / "clf"


def test_parse_mcq_reads_lettered_options():
    assert parse_mcq(SQA) == ("What is in the image?", [("A", "dog"), ("B", "cat"), ("C", "red car")])
    assert parse_mcq("Is there a dog?\nAnswer yes or no.") is None
    assert parse_mcq("Which?\nA. one") is None  # one option is no choice
    assert parse_mcq("Which?\n(A) up\n(B) down") == ("Which?", [("A", "up"), ("B", "down")])
    assert parse_mcq("Which?\nB. up\nC. down") is None  # options start at A


def test_generate_until_answers_yes_no_from_the_sns_with_early_exit(setup, tiny_llava):
    clf, be, samples, _ = setup
    assert be.vlm.num_layers == clf.exit_layer + 1  # truncate=true: layers 0..L* only were built
    calls = [0]
    hook = be.vlm.decoder_layers[0].register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            got = be.generate_until([_req(s.question, {"until": ["\n"]}, _visual, i, "t", "test")
                                     for i, s in enumerate(samples)])
    finally:
        hook.remove()
    assert not [w for w in record if "form" in str(w.message)]  # these questions read like the probe's
    want = clf.predict(tiny_llava, samples).preds.tolist()  # the full model, its own forward
    assert got == ["Yes" if p else "No" for p in want]
    assert calls[0] == 2  # 6 questions in batches of 4


def _option_scores(clf, vlm, image, stem, options):
    samples = [Sample(f"o{i}", image, mcq_question(stem, o)) for i, o in enumerate(options)]
    acts = clf.sn_activations(vlm, samples)
    out = clf.predict_from_acts(acts)  # vote: the share of SNs voting yes
    return out.scores.tolist(), sn_margins(acts, clf.sns.alpha, clf.sns.rule).mean(dim=1).tolist()


def test_mcq_and_loglikelihood_use_the_per_option_binary_questions(setup, tiny_llava):
    clf, be, samples, _ = setup
    options = ["dog", "cat", "red car"]
    image = Image.open(samples[0].image).convert("RGB")
    scores, margins = _option_scores(clf, tiny_llava, image, "What is in the image?", options)
    best = max(range(3), key=lambda j: (scores[j], margins[j]))
    be.task_dict["sqa"] = be.task_dict["t"]
    with pytest.warns(UserWarning, match="form"):  # the MCQ questions are not the probing set's
        assert be.generate_until([_req(SQA, {}, _visual, 0, "sqa", "test")]) == ["ABC"[best]]
    lls = be.loglikelihood([_req(SQA, f" {letter}", _visual, 0, "sqa", "test") for letter in "ABC"])
    by_text = be.loglikelihood([_req("What is in the image?", f" {o}", _visual, 0, "sqa", "test") for o in options])
    for (ll, greedy), (ll2, _), s in zip(lls, by_text, scores, strict=True):
        assert ll == pytest.approx(-math.log(min(max(s, 1e-6), 1 - 1e-6))) and ll == pytest.approx(ll2)
        assert greedy == (s > 0.5)
    # lmms-eval's multiple_choice takes the argmin of these losses: the highest-scoring option (ties: first)
    assert min(range(3), key=lambda j: lls[j][0]) == max(range(3), key=lambda j: scores[j])
    q = samples[1].question
    (ll_yes, g_yes), (ll_no, g_no) = be.loglikelihood([_req(q, " yes", _visual, 1, "t", "test"),
                                                       _req(q, "No.", _visual, 1, "t", "test")])
    assert math.exp(-ll_yes) + math.exp(-ll_no) == pytest.approx(1.0, abs=2e-6) and g_yes != g_no
    assert g_yes == (clf.predict(tiny_llava, [samples[1]]).preds.item() == 1)


def test_a_task_asking_differently_gets_one_warning_naming_both(setup):
    _, be, samples, _ = setup
    post = "\nAnswer the question using a single word or phrase."
    reqs = [_req(s.question + post, {}, _visual, i, "pope", "test") for i, s in enumerate(samples[:2])]
    be.task_dict["pope"] = be.task_dict["t"]
    with pytest.warns(UserWarning) as record:
        be.generate_until(reqs)
    msgs = [str(w.message) for w in record if "asks" in str(w.message)]
    assert len(msgs) == 1 and "task 'pope'" in msgs[0] and repr(samples[0].question + post) in msgs[0]
    assert str(be.clf.question_format) in msgs[0] and "post_prompt" in msgs[0]


def test_what_the_backend_refuses(setup, tiny_llava_dir):
    _, be, samples, clf_dir = setup
    samples0 = samples[0].question
    with pytest.raises(NotImplementedError, match="multi-round"):
        be.generate_until_multi_round([])
    with pytest.raises(ConfigError, match="unknown --model_args temperature.*valid: classifier"):
        SuperNeuronsBackend(classifier="x", temperature=0)
    with pytest.raises(ConfigError, match="truncate='maybe'"):
        SuperNeuronsBackend(classifier=str(clf_dir), pretrained=str(tiny_llava_dir), truncate="maybe")
    be.task_dict["bad"] = {"test": [{"image": None}]}
    for visual, what in ((lambda d: [], "got 0 visual"), (lambda d: _visual(be.task_dict["t"]["test"][0]) * 2,
                                                           "got 2 visual"), (lambda d: ["clip.mp4"], "str")):
        with pytest.raises(DataError, match=f"task 'bad' doc 0: superneurons answers questions about one image.*{what}"):
            be.generate_until([_req(samples0, {}, visual, 0, "bad", "test")])
    with pytest.raises(DataError, match="no document 7 of task 'bad'"):
        be.generate_until([_req(samples0, {}, _visual, 7, "bad", "test")])


@pytest.mark.skipif(HAVE_LMMS_EVAL, reason="lmms-eval is installed here")
def test_without_lmms_eval_the_error_names_the_extra():
    with pytest.raises(ImportError, match=r"pip install superneurons\[lmms-eval\]"):
        backend_module.manifest()
    with pytest.raises(ImportError, match=r"subclasses lmms-eval's `lmms`.*superneurons\[lmms-eval\]"):
        backend_module.SuperNeuronsLMM  # noqa: B018
    with pytest.raises(AttributeError):
        backend_module.Nothing  # noqa: B018


def test_pyproject_declares_the_entry_point_and_the_extra():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["lmms_eval.models"] == {"superneurons": "superneurons.integrations.lmms_eval:manifest"}
    assert any(r.startswith("lmms-eval") for r in project["optional-dependencies"]["lmms-eval"])
