"""`superneurons demo --quick` end to end in a fresh process: report.html / report.md / results.json.

Runs on the shipped demo model when it is installed (the real command), else on the tiny random
LLaVA fixture. CI budget: under 3 minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from superneurons.inference.classifier import SuperNeuronClassifier
from superneurons.synth import ALL_FAMILIES

QUICK_BUDGET_S = 180


def _shipped_model() -> bool:
    from superneurons.errors import ModelError
    from superneurons.synth import demo_model_path

    try:
        demo_model_path()
    except ModelError:
        return False
    return True


@pytest.mark.slow
def test_demo_quick_writes_the_report(tiny_llava_dir, tmp_path):
    out = tmp_path / "demo"
    # one thread: tiny models gain little from two, and a shared runner cannot oversubscribe them
    cmd = [sys.executable, "-c", "from superneurons.cli.app import main; main()", "demo", "--quick", "--out", str(out),
           "--threads", "1"]
    if not _shipped_model():
        cmd += ["--model", str(tiny_llava_dir), "--max-new-tokens", "4"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="200")
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=2 * QUICK_BUDGET_S)
    elapsed = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr[-3000:]
    assert elapsed < QUICK_BUDGET_S, f"demo --quick took {elapsed:.0f} s"
    for title in ("Tab. 1: best single SN", "Tab. 2: SNs on the validation set", "Tab. 5: runtime on presence"):
        assert title in res.stdout

    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["families"] == list(ALL_FAMILIES)
    assert set(results["tables"]) == {"tab1", "tab2", "tab5", "bench"}
    for f in ALL_FAMILIES:
        fr = results["family"][f]
        assert fr["n_probe"] == 40 and fr["n_val"] == 24
        assert {"sns_mean", "sns_vote", "model_generation", "model_first_token"} <= set(fr["val"]["methods"])
        assert fr["chosen"]["k"] >= 1 and 0 <= fr["chosen"]["exit_layer"] < results["meta"]["num_layers"]
        assert fr["early"] is None or fr["early"]["val"]["classifier"]["exit_layer"] <= 2
        assert len(fr["probe"]["beating"]["per_layer"]) == results["meta"]["num_layers"]
    assert "mcq" in results["family"]["mcq"]["val"]  # question-level accuracy
    bench = results["bench"]
    assert {"generate_1", "prefill", "bare_exit_L1", "sn_L1"} <= {r["key"] for r in bench["rows"]}

    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html and not re.search(r'(src|href)="(?!data:|#)', html.split("</style>", 1)[1])
    assert html.count("data:image/png;base64,") >= 8  # Fig. 3a, 3b, 4, 5, App. 1, 2, runtime, cascade
    for anchor in ("tab1", "tab2", "tab5", "bench"):
        assert f'id="{anchor}"' in html
    md = (out / "report.md").read_text(encoding="utf-8")
    figures = re.findall(r"\]\((figures/[^)]+\.png)\)", md)
    assert len(figures) >= 8 and all((out / p).is_file() for p in figures)
    for name in ("fig3a_alpha", "fig3b_sns_per_layer", "appfig1_sn_locations", "appfig2_overlap", "fig4_agreement",
                 "fig5_probe_size", "runtime"):
        assert f"figures/{name}.png" in md

    clf = SuperNeuronClassifier.load(out / "classifiers" / "presence")
    assert clf.meta["family"] == "presence" and clf.exit_layer == results["family"]["presence"]["chosen"]["exit_layer"]
