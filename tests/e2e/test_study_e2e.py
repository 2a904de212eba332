"""`superneurons study` end to end on a tiny LLaVA: two datasets in published layouts (CLEVR built by the
study's `prepare`, VizWiz prepared beforehand), the report, a kill mid-way and the resume, a third dataset.

Model work is counted two ways: forwards of decoder layer 0 (every model path runs it) and the ids of
the samples handed to `vlm.prepare` (so a rerun can be shown to touch no finished dataset's samples).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from superneurons.data.registry import prepare_dataset
from superneurons.study import run_study, study_toml
from superneurons.study.steps import StepCache

N = 12  # questions per split and dataset
FIGURES = ("fig3a_alpha", "fig3b_sns_per_layer", "appfig1_sn_locations", "appfig2_overlap", "fig4_agreement",
           "fig5_probe_size", "runtime", "cascade_sweep")


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def _picture(path: Path, yes: bool, rng: random.Random) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    base = (220, 40, 40) if yes else (40, 40, 220)
    im = Image.new("RGB", (24, 24), base)
    px = im.load()
    for _ in range(40):
        px[rng.randrange(24), rng.randrange(24)] = tuple(min(255, max(0, c + rng.randint(-60, 60))) for c in base)
    im.save(path)


def clevr_layout(root: Path) -> Path:
    """CLEVR_v1.0: questions/CLEVR_{split}_questions.json + images/{split}/ (yes = red image)."""
    rng = random.Random(1)
    for split in ("train", "val"):
        qs = []
        for i in range(N):
            name = f"CLEVR_{split}_{i:06d}.png"
            _picture(root / "images" / split / name, i % 2 == 0, rng)
            qs.append({"image_index": i, "question_index": i, "image_filename": name, "split": split,
                       "question_family_index": 1, "question": f"Is there a red thing number {i % 3}?",
                       "answer": "yes" if i % 2 == 0 else "no"})
        write_json(root / "questions" / f"CLEVR_{split}_questions.json", {"info": {"split": split}, "questions": qs})
    return root


def vizwiz_layout(root: Path) -> Path:
    """VizWiz: Annotations/{split}.json (10 answers each) + {split}/VizWiz_{split}_*.jpg."""
    rng = random.Random(2)
    for split in ("train", "val"):
        recs = []
        for i in range(N):
            name = f"VizWiz_{split}_{i:08d}.png"
            _picture(root / split / name, i % 2 == 1, rng)
            answer = "yes" if i % 2 == 1 else "no"
            recs.append({"image": name, "question": f"Is this light on {'now' * (i % 2)}?", "answer_type": "yes/no",
                         "answerable": 1, "answers": [{"answer": answer, "answer_confidence": "yes"}] * 10})
        write_json(root / "Annotations" / f"{split}.json", recs)
    return root


class Counter:
    """Forwards of decoder layer 0 and ids of the samples prepared for the model."""

    def __init__(self, vlm, monkeypatch) -> None:
        self.forwards = 0
        self.ids: set[str] = set()
        layer0 = vlm.language_model.layers[0]
        self.handle = layer0.register_forward_pre_hook(lambda *a: self._tick())
        prepare = vlm.prepare

        def counted(samples, *args, **kwargs):
            self.ids.update(s.id for s in samples)
            return prepare(samples, *args, **kwargs)

        monkeypatch.setattr(vlm, "prepare", counted)

    def _tick(self) -> None:
        self.forwards += 1

    def reset(self) -> None:
        self.forwards, self.ids = 0, set()


def _study(tmp: Path, model: Path, third: Path | None = None) -> Path:
    clevr_layout(tmp / "data" / "CLEVR_v1.0")
    viz = vizwiz_layout(tmp / "data" / "vizwiz")
    for split, stem in (("train", "probe"), ("val", "val")):
        prepare_dataset("vizwiz", viz, split, tmp / "runs" / "vizwiz" / f"{stem}.jsonl")
    datasets = [{"name": "clevr", "prepare": {"dataset": "clevr", "root": "data/CLEVR_v1.0", "n": 10,
                                              "balanced": True}},
                {"name": "vizwiz", "probe": "runs/vizwiz/probe.jsonl", "val": "runs/vizwiz/val.jsonl"}]
    if third is not None:
        datasets.append({"name": "colors", "probe": str(third), "val": str(third)})
    options = {"early_max_layer": [1, 2], "bench_dataset": "vizwiz", "batch_size": 4, "max_new_tokens": 4, "bench_batch_size": 4,
               "bench_repeats": 1, "bench_warmup": 0, "bench_exit_layers": [1], "cascade_margins": [0.0, 0.25, 0.5],
               "experiments": {"overlap": {}, "probe-size": {"sizes": [4, 8]}}}
    path = tmp / "study.toml"
    path.write_text(study_toml(str(model), datasets, options, title="tiny study"), encoding="utf-8")
    return path


@pytest.mark.slow
def test_study_report_kill_resume_and_a_third_dataset(tiny_llava, tiny_llava_dir, tmp_path, monkeypatch,
                                                      make_dataset):
    study = _study(tmp_path, tiny_llava_dir)
    out = tmp_path / "out"
    count = Counter(tiny_llava, monkeypatch)
    try:
        # 1. killed while evaluating the second dataset
        real_run = StepCache.run

        def killing(self, name, key, fn):
            if name == "vizwiz/evaluate":
                raise KeyboardInterrupt("killed")
            return real_run(self, name, key, fn)

        monkeypatch.setattr(StepCache, "run", killing)
        with pytest.raises(KeyboardInterrupt):
            run_study(study, out, vlm=tiny_llava, progress=False)
        assert count.forwards > 0 and not (out / "results.json").exists()
        killed_forwards = count.forwards
        monkeypatch.setattr(StepCache, "run", real_run)

        # 2. the rerun finishes without redoing a finished step
        count.reset()
        paths = run_study(study, out, vlm=tiny_llava, progress=False)
        results = json.loads(paths["json"].read_text(encoding="utf-8"))
        assert set(results["steps"]["reused"]) == {"clevr/probe", "clevr/select", "clevr/evaluate", "vizwiz/probe",
                                                   "vizwiz/select"}
        assert "vizwiz/evaluate" in results["steps"]["ran"] and "clevr/probe" not in results["steps"]["ran"]
        assert not any(i.startswith("clevr-train") for i in count.ids)  # clevr's probing set: captured once
        resumed_forwards = count.forwards

        # ... and did exactly the model work a study run in one go does
        count.reset()
        run_study(study, tmp_path / "one_go", vlm=tiny_llava, progress=False)
        assert count.forwards == killed_forwards + resumed_forwards

        # 3. the report: every table and figure, in results.json and report.html
        assert results["families"] == ["clevr", "vizwiz"]
        assert set(results["tables"]) == {"tab1", "tab2", "tab5", "bench"}
        assert (out / "data" / "clevr" / "probe.jsonl").is_file()  # built by the study's prepare
        assert results["datasets"]["clevr"]["probe"].startswith("datasets prepare clevr --root ")
        assert results["datasets"]["clevr"]["probe"].endswith("--split train --n 10 --balanced")
        assert results["datasets"]["vizwiz"]["val"] == str(tmp_path / "runs" / "vizwiz" / "val.jsonl")
        assert results["family"]["clevr"]["n_probe"] == 10 and results["family"]["vizwiz"]["n_probe"] == N
        for name in ("clevr", "vizwiz"):
            fr = results["family"][name]
            assert {"sns_mean", "sns_vote", "model_generation", "model_first_token"} <= set(fr["val"]["methods"])
            assert "sns_vs_model_generation" in fr["val"]["agreement"]
            assert all(e["val"]["classifier"]["exit_layer"] <= e["max_layer"] for e in fr["early_sets"])
        assert set(results["experiments"]["results"]) == {"overlap", "probe-size"}
        html = (out / "report.html").read_text(encoding="utf-8")
        assert "<script" not in html and not re.search(r'(src|href)="(?!data:|#)', html.split("</style>", 1)[1])
        for anchor in ("tab1", "tab2", "tab5", "bench", *(f"fig-{f}" for f in FIGURES)):
            assert f'id="{anchor}"' in html, anchor
        md = (out / "report.md").read_text(encoding="utf-8")
        assert all((out / p).is_file() for p in re.findall(r"\]\((figures/[^)]+\.png)\)", md))
        assert "tiny study" in md and "Tab. 5: runtime on vizwiz" in md

        # 4. the command: a repeated study reuses every step; `report` rebuilds the report without the model
        from typer.testing import CliRunner

        from superneurons.cli.app import _register_all, app

        _register_all()
        res = CliRunner().invoke(app, ["study", str(study), "--out", str(out)])
        assert res.exit_code == 0, res.output
        assert "(0 steps run, 10 reused)" in " ".join(res.output.split()) and "Tab. 2: SNs on the validation set" in res.output
        again = json.loads((out / "results.json").read_text(encoding="utf-8"))
        assert again["tables"]["tab2"] == results["tables"]["tab2"] and again["steps"]["ran"] == []
        (out / "report.html").unlink()
        res = CliRunner().invoke(app, ["report", str(out)])
        assert res.exit_code == 0 and (out / "report.html").read_text(encoding="utf-8").count("data:image/png") >= 8

        # 5. a third dataset: only its samples meet the model; the cross-dataset tables take it in
        third = make_dataset(tmp_path / "colors", 8, name="colors.jsonl")
        study3 = _study(tmp_path, tiny_llava_dir, third=third)
        count.reset()
        r3 = json.loads(run_study(study3, out, vlm=tiny_llava, progress=False)["json"]
                        .read_text(encoding="utf-8"))
        assert count.forwards > 0 and count.ids and all(i.startswith("s") for i in count.ids)  # colors' ids
        assert {s for s in r3["steps"]["ran"] if not s.startswith("experiments/")} == \
            {"colors/probe", "colors/select", "colors/evaluate"}
        assert r3["families"] == ["clevr", "vizwiz", "colors"]
        assert r3["tables"]["tab1"]["columns"][2:] == ["Clevr", "Vizwiz", "Colors"]
    finally:
        count.handle.remove()


@pytest.mark.slow
def test_study_under_torchrun_without_generation_then_resumed_in_one_process(tiny_llava, tiny_llava_dir, tmp_path,
                                                                           make_dataset):
    import os
    import subprocess
    import sys

    data = make_dataset(tmp_path / "colors", 9, name="colors.jsonl")  # odd: the ranks capture 5 and 4
    study = tmp_path / "study.toml"
    study.write_text(study_toml(str(tiny_llava_dir), [{"name": "colors", "probe": str(data), "val": str(data)}],
                                {"generate": False, "bench": False, "cascade": False, "experiments": [],
                                 "batch_size": 4, "early_max_layer": 1}), encoding="utf-8")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TRANSFORMERS_VERBOSITY="error")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "superneurons",
           "study", str(study), "--out", str(out), "--device", "cpu"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    fr = results["family"]["colors"]
    assert fr["model_reference"] == "first-token logits" and "model_generation" not in fr["val"]["methods"]
    assert fr["probe"]["n"] == 9 and "Tab. 2" in (out / "report.md").read_text(encoding="utf-8")
    again = json.loads(run_study(study, out, vlm=tiny_llava, progress=False)["json"].read_text(encoding="utf-8"))
    assert again["steps"]["ran"] == [] and again["tables"]["tab2"] == results["tables"]["tab2"]
