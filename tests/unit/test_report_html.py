"""Figures (PNG), the Document model, Markdown and the self-contained HTML; rebuilding from results.json."""

from __future__ import annotations

import base64
import json
import re
import sys

import pytest
from report_fixtures import fake_results

from superneurons.errors import SuperNeuronsError
from superneurons.report import figures as F
from superneurons.report.build import build_document, summary_bullets, write_report
from superneurons.report.document import Bullets, Document, Figure, Section, SimpleTable, inline_html
from superneurons.report.html import render_html
from superneurons.report.tables import table1

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("draw", [F.alpha_figure, F.sns_per_layer_figure, F.location_figure, F.agreement_figure])
def test_figures_are_png(draw):
    fig = draw(fake_results())
    assert fig.png.startswith(PNG) and len(fig.png) > 2000 and fig.name in F.figure_names() and fig.title


def test_runtime_figure():
    fig = F.runtime_figure(fake_results()["bench"])
    assert fig.png.startswith(PNG) and fig.name == "runtime"


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(SuperNeuronsError, match=re.escape("pip install superneurons[report]")):
        F.alpha_figure(fake_results())


def test_inline_markup_is_escaped():
    assert inline_html("a <b> `x<y>` **bold** [doc](http://e.org/?a=1&b=2)") == (
        'a &lt;b&gt; <code>x&lt;y&gt;</code> <b>bold</b> <a href="http://e.org/?a=1&amp;b=2">doc</a>')


def _doc() -> Document:
    fig = Figure("f1", "A figure", PNG + b"rest", caption="see `x`")
    return Document("Title <1>", "sub", [
        Section("Intro", ["para with **bold**", Bullets(["one", "two"])]),
        Section("Tables", [table1(fake_results()), SimpleTable("simple", ["a", "b"], [["1", "2"]])]),
        Section("Figures", [fig])])


def test_html_is_self_contained():
    h = render_html(_doc())
    assert h.startswith("<!DOCTYPE html>") and "<title>Title &lt;1&gt;</title>" in h
    # nothing loaded from elsewhere: no scripts, no external src/href
    assert "<script" not in h and "<link" not in h
    assert not re.search(r'src="(?!data:)', h)
    srcs = re.findall(r'src="data:image/png;base64,([^"]+)"', h)
    assert len(srcs) == 1 and base64.b64decode(srcs[0]) == PNG + b"rest"
    assert '<nav><a href="#intro">Intro</a>' in h and '<section id="tables">' in h
    assert "<li>two</li>" in h and "<b>bold</b>" in h and 'class="paper" id="tab1"' in h


def test_markdown_and_figure_files(tmp_path):
    doc = _doc()
    md = doc.to_markdown("figures")
    assert md.startswith("# Title <1>") and "## Tables" in md and "![A figure](figures/f1.png)" in md
    assert "- one" in md and "| a | b |" in md and "**Tab. 1" in md
    paths = doc.write_figures(tmp_path / "figures")
    assert [p.name for p in paths] == ["f1.png"] and paths[0].read_bytes() == PNG + b"rest"


def test_summary_counts_families_matching_the_model():
    bullets = summary_bullets(fake_results())
    assert "**2 of 2** datasets (presence, counting)" in bullets[0]
    assert any("Early exit on presence" in b and "106%" in b and "L* <= 1 matches or beats the model" in b
               for b in bullets)  # 0.85 / 0.80
    assert any("95.2x faster than generate(128)" in b and "1.05x the bare hooked exit" in b for b in bullets)


def test_summary_names_each_early_exit_set_and_the_training_disclosure():
    res = fake_results()
    assert not any("trained" in b for b in summary_bullets(res))  # no training.json: nothing to disclose
    fr = res["family"]["presence"]
    second = {**fr["early"], "max_layer": 2, "val": {**fr["early"]["val"], "classifier": {"k": 4, "exit_layer": 2}}}
    fr["early_sets"] = [fr["early"], second]
    res["model_training"] = {"disclosure": "The demo model was trained on the synthetic benchmark's train split."}
    bullets = summary_bullets(res)
    assert bullets[0] == res["model_training"]["disclosure"]
    assert [b.split("(")[0] for b in bullets if b.startswith("Early exit")] == \
        ["Early exit on presence: the best SN set with L* <= 1 ", "Early exit on presence: the best SN set with L* <= 2 "]


def test_summary_says_plainly_when_early_exit_falls_short():
    res = fake_results()
    early = res["family"]["presence"]["early"]["val"]["methods"]
    early["sns_mean"]["accuracy"], early["sns_vote"]["accuracy"] = 0.6, 0.7  # model 0.80
    assert any("88%" in b and "L* <= 1 does not reach the model" in b for b in summary_bullets(res))
    early["sns_mean"]["accuracy"], early["sns_vote"]["accuracy"] = 0.5, 0.52
    assert any("L* <= 1 is at chance: no early exit on this model" in b for b in summary_bullets(res))


def test_write_report_and_rebuild_from_json(tmp_path):
    res = fake_results()
    paths = write_report(res, tmp_path)
    assert {p.name for p in paths["figures"].iterdir()} >= {"fig3a_alpha.png", "runtime.png", "fig4_agreement.png"}
    h = paths["html"].read_text(encoding="utf-8")
    assert h.count("data:image/png;base64,") == 5  # Fig. 3b, App. Fig. 1, Fig. 4, Fig. 3a, runtime
    again = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert set(again["tables"]) == {"tab1", "tab2", "tab5", "bench"}
    doc = build_document(again, tmp_path)
    assert [s.title for s in doc.sections][:5] == ["Summary", "Setup", "Tab. 1: best single SN (probing set)",
                                                   "Tab. 2: SNs on validation", "Tab. 5: runtime"]
    assert "not available in this run" in paths["markdown"].read_text(encoding="utf-8")  # no overlap figure


def test_qualitative_examples(tmp_path):
    from PIL import Image

    res = fake_results()
    (tmp_path / "img").mkdir()
    Image.new("RGB", (16, 16), (200, 20, 20)).save(tmp_path / "img" / "a.png")
    base = {"question": "Is there a red circle in the image?", "model_first_token": 1, "sns_mean": 1}
    res["family"]["presence"]["val"]["answers"] = [
        {**base, "id": "both-right", "image": "img/a.png", "label": "yes", "sns_vote": 1, "model_generation": 1},
        {**base, "id": "sn-right", "image": "img/a.png", "label": "no", "sns_vote": 0, "model_generation": 1},
        {**base, "id": "sn-wrong", "image": "img/a.png", "label": "yes", "sns_vote": 0, "model_generation": 1}]
    assert [e["id"] for e in F.pick_examples(res)] == ["sn-right"]
    fig = F.qualitative_figure(res, tmp_path)
    assert fig is not None and fig.png.startswith(PNG) and fig.name == "fig6_examples"
    assert F.qualitative_figure(res, tmp_path / "elsewhere") is None  # images not found: no figure
    doc = build_document(res, tmp_path)
    assert "fig6_examples" in [f.name for f in doc.figures()]
