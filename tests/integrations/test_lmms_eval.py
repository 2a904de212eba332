"""lmms-eval itself runs a saved classifier: entry point, the `lmms-eval` command, MCQ and multiple-choice tasks.

Needs lmms-eval, which cannot sit beside the CPU torch of the dev venv (it pins wandb and pulls
torchvision): `.ci/run` installs it into its own venv (`pip install --no-deps lmms-eval` plus the
few packages its evaluation path imports, `.ci/lmms-eval-requirements.txt`) and runs this file
there. Elsewhere it is skipped. Data, tasks and the classifiers are made here from the shipped demo
model and the synthetic benchmark; the classifier reaches lmms-eval as a Hub id from a local cache.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

pytest.importorskip("lmms_eval")

from superneurons.activations.probing import probe  # noqa: E402
from superneurons.constants import CLASSIFIER_CONFIG, CLASSIFIER_WEIGHTS  # noqa: E402
from superneurons.data.mcq import mcq_question  # noqa: E402
from superneurons.data.samples import Sample, load_samples  # noqa: E402
from superneurons.inference.aggregation import sn_margins  # noqa: E402
from superneurons.inference.classifier import fit_classifier  # noqa: E402
from superneurons.models import load_model  # noqa: E402
from superneurons.synth import demo_model_path, generate_benchmark  # noqa: E402
from superneurons.testing.hub import cache_repo  # noqa: E402

REPO = "user/super-neurons"
UTILS = '''
import os
from PIL import Image

def doc_to_visual(doc):
    return [Image.open(doc["image"]).convert("RGB")]

def yes_no_text(doc, lmms_eval_specific_kwargs=None):
    kw = lmms_eval_specific_kwargs or {}
    return f"{kw.get('pre_prompt', '')}{doc['question']}{kw.get('post_prompt', '')}"

def yes_no_results(doc, results):
    return {"accuracy": float(results[0].strip().lower() == doc["label"])}

def mcq_text(doc, lmms_eval_specific_kwargs=None):
    options = "\\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(doc["choices"]))
    return f"{doc['question']}\\n{options}\\nAnswer with the option's letter from the given choices directly."

def mcq_results(doc, results):
    return {"exact_match": float(results[0].strip() == chr(65 + doc["answer"]))}

def stem(doc):
    return doc["question"]

def choices(doc):
    return doc["choices"]

def answer(doc):
    return doc["answer"]
'''
YES_NO = """task: sn_yes_no
dataset_path: json
dataset_kwargs: {{data_files: {{test: {data}}}}}
test_split: test
output_type: generate_until
doc_to_visual: !function sn_utils.doc_to_visual
doc_to_text: !function sn_utils.yes_no_text
doc_to_target: label
generation_kwargs: {{max_new_tokens: 8}}
process_results: !function sn_utils.yes_no_results
metric_list: [{{metric: accuracy, aggregation: mean, higher_is_better: true}}]
lmms_eval_specific_kwargs:
  default: {{post_prompt: "\\nAnswer the question using a single word or phrase."}}
  superneurons: {{post_prompt: ""}}
"""
MCQ_GEN = """task: sn_mcq_gen
dataset_path: json
dataset_kwargs: {{data_files: {{test: {data}}}}}
test_split: test
output_type: generate_until
doc_to_visual: !function sn_utils.doc_to_visual
doc_to_text: !function sn_utils.mcq_text
doc_to_target: answer
generation_kwargs: {{max_new_tokens: 4}}
process_results: !function sn_utils.mcq_results
metric_list: [{{metric: exact_match, aggregation: mean, higher_is_better: true}}]
"""
MCQ_LL = """task: sn_mcq_ll
dataset_path: json
dataset_kwargs: {{data_files: {{test: {data}}}}}
test_split: test
output_type: multiple_choice
doc_to_visual: !function sn_utils.doc_to_visual
doc_to_text: !function sn_utils.stem
doc_to_choice: !function sn_utils.choices
doc_to_target: !function sn_utils.answer
metric_list: [{{metric: acc, aggregation: mean, higher_is_better: true}}]
"""


def _scores(clf, vlm, samples):
    acts = clf.sn_activations(vlm, samples)
    return clf.predict_from_acts(acts).scores.tolist(), sn_margins(acts, clf.sns.alpha, clf.sns.rule).mean(1).tolist()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Two classifiers of the demo model (presence, MCQ) in a Hub cache, the task folder, expected accuracies."""
    root = tmp_path_factory.mktemp("lmms-eval")
    paths = generate_benchmark(root / "bench", n_scenes={"probe": 16, "val": 4}, families=["presence", "mcq"])
    vlm = load_model(str(demo_model_path()), device="cpu", dtype="float32")
    files, expect = {}, {}
    for fam in ("presence", "mcq"):
        store = probe(vlm, load_samples(paths["probe"][fam]), root / f"acts-{fam}", progress=False)
        clf = fit_classifier(store, aggregation="vote").classifier
        clf.save(root / fam)
        files.update({f"{fam}/{n}": root / fam / n for n in (CLASSIFIER_WEIGHTS, CLASSIFIER_CONFIG)})
        expect[fam] = clf
    cache = root / "hub"
    cache_repo(cache, REPO, files)
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / "sn_utils.py").write_text(UTILS)

    val = load_samples(paths["val"]["presence"])[:2]  # the two-sample task
    rows = [{"image": str(s.image), "question": s.question, "label": s.label} for s in val]
    (root / "yes_no.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tasks / "sn_yes_no.yaml").write_text(YES_NO.format(data=root / "yes_no.jsonl"))
    preds = expect["presence"].predict(vlm, val).preds.tolist()
    want = {"yes_no": sum(int(p == s.y) for p, s in zip(preds, val, strict=True)) / len(val)}

    questions: dict[str, dict] = {}
    for s in load_samples(paths["val"]["mcq"]):
        m = s.meta
        questions.setdefault(m["question_id"], {"image": str(s.image), "question": m["stem"],
                                                "choices": m["options"], "answer": m["options"].index(m["answer"])})
    docs = list(questions.values())
    (root / "mcq.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tasks / "sn_mcq_gen.yaml").write_text(MCQ_GEN.format(data=root / "mcq.jsonl"))
    (tasks / "sn_mcq_ll.yaml").write_text(MCQ_LL.format(data=root / "mcq.jsonl"))
    gen = ll = 0
    for d in docs:
        samples = [Sample(f"o{i}", d["image"], mcq_question(d["question"], c)) for i, c in enumerate(d["choices"])]
        s, m = _scores(expect["mcq"], vlm, samples)
        gen += max(range(len(s)), key=lambda j: (s[j], m[j])) == d["answer"]
        ll += max(range(len(s)), key=lambda j: s[j]) == d["answer"]  # argmin of -log s: the first best
    want.update({"mcq_gen": gen / len(docs), "mcq_ll": ll / len(docs), "n_mcq": len(docs)})
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(root / "datasets")}
    return root, tasks, env, want


def test_the_entry_point_is_discoverable_and_resolves_to_an_lmms():
    eps = {e.name: e.value for e in entry_points(group="lmms_eval.models")}
    assert eps.get("superneurons") == "superneurons.integrations.lmms_eval:manifest"
    from lmms_eval.api.model import lmms
    from lmms_eval.models import get_model, list_available_models

    assert "superneurons" in list_available_models()
    cls = get_model("superneurons")
    assert issubclass(cls, lmms) and cls.__name__ == "SuperNeuronsLMM" and cls.is_simple
    code = "import sys, superneurons.integrations.lmms_eval; print('lmms_eval' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # our module alone does not import lmms-eval


def test_lmms_eval_cli_runs_a_local_two_sample_task_and_prints_accuracy(work):
    root, tasks, env, want = work
    cmd = [str(Path(sys.executable).parent / "lmms-eval"), "--model", "superneurons", "--model_args",
           f"classifier={REPO}/presence,pretrained={demo_model_path()},truncate=true",
           "--tasks", "sn_yes_no", "--include_path", str(tasks), "--batch_size", "2", "--device", "cpu"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=root)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    row = re.search(r"\|\s*sn_yes_no\s*\|[^|]*\|[^|]*\|\s*accuracy\s*\|[^|]*\|\s*([0-9.]+)\s*\|", res.stdout)
    assert row, res.stdout[-3000:]
    assert float(row.group(1)) == pytest.approx(want["yes_no"])
    print("\n".join(line for line in res.stdout.splitlines() if line.startswith("|")))  # for the CI log


def test_mcq_tasks_answer_from_the_per_option_binary_questions(work, monkeypatch):
    root, tasks, env, want = work
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    import huggingface_hub
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.models import get_model
    from lmms_eval.tasks import TaskManager, get_task_dict

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", env["HF_HUB_CACHE"])
    monkeypatch.chdir(root)
    manager = TaskManager("INFO", include_path=str(tasks), include_defaults=False, model_name="superneurons")
    args = f"classifier={REPO}/mcq,pretrained={demo_model_path()}"
    out = simple_evaluate(model="superneurons", model_args=args, tasks=["sn_mcq_gen"], batch_size=4, device="cpu",
                          task_manager=manager)
    assert out["results"]["sn_mcq_gen"]["exact_match,none"] == pytest.approx(want["mcq_gen"])

    # A `multiple_choice` task: lmms-eval 0.7.3 cannot score one for any model (its evaluator turns each
    # (loss, is_greedy) pair into a string, so `process_results` fails to unpack it; its own `dummy` model
    # fails the same way). So its requests are built by lmms-eval's task and scored by the backend here,
    # and the argmin over each document's options is taken as `process_results` would.
    task = get_task_dict(["sn_mcq_ll"], manager)["sn_mcq_ll"]
    task.build_all_requests(rank=0, world_size=1)
    lm = get_model("superneurons").create_from_arg_string(args, {"batch_size": 4, "device": "cpu"})
    lm.task_dict["sn_mcq_ll"] = task.dataset
    losses = lm.loglikelihood(task.instances)
    by_doc: dict[int, list[tuple[int, float]]] = {}
    for inst, (loss, _) in zip(task.instances, losses, strict=True):
        by_doc.setdefault(inst.doc_id, []).append((inst.idx, loss))
    docs = task.dataset["test"]
    right = sum(min(opts, key=lambda o: (o[1], o[0]))[0] == docs[d]["answer"] for d, opts in by_doc.items())
    assert len(by_doc) == want["n_mcq"] and right / len(by_doc) == pytest.approx(want["mcq_ll"])
    print({k: v for k, v in want.items()})
