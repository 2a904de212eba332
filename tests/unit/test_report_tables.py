"""Tab. 1 / 2 / 5 layouts and the bench table: numbers, deltas, best marks and the three renderers."""

from __future__ import annotations

from report_fixtures import fake_results
from rich.console import Console

from superneurons.report.tables import bench_table, table1, table2, table5
from superneurons.report.tabular import Cell, Row, Table, mark_best, pct


def _row(t: Table, group: str, method: str) -> Row:
    return next(r for r in t.rows if r.group == group and r.method == method)


def test_pct_rounds_and_deltas_in_points():
    c = pct(0.9251, 0.907)
    assert c.text == "92.5" and c.value == 0.9251 and round(c.delta, 6) == 1.8
    assert pct(None).text == "–" and pct(None).value is None


def test_mark_best_marks_ties_and_second():
    rows = [Row("g", "a", [Cell("90.0", 0.9001)]), Row("g", "b", [Cell("90.0", 0.8999)]),
            Row("g", "c", [Cell("80.0", 0.8)]), Row("g", "d", [Cell("70.0", 0.7)])]
    mark_best(rows)
    assert [r.cells[0].best for r in rows] == [True, True, False, False]  # equal as shown: both best
    assert [r.cells[0].second for r in rows] == [False, False, True, False]
    low = [Row("g", "a", [Cell("1.0", 1.0)]), Row("g", "b", [Cell("0.5", 0.5)])]
    mark_best(low, second=False, lower_is_better=True)
    assert [r.cells[0].best for r in low] == [False, True]


def test_table1_layout_and_values():
    t = table1(fake_results())
    assert t.columns == ["Presence", "Counting"]
    model, sn = _row(t, "Accuracy", "Model"), _row(t, "Accuracy", "SN")
    assert model.baseline and not sn.baseline
    assert [c.text for c in model.cells] == ["80.0", "55.0"]
    assert [c.text for c in sn.cells] == ["90.0", "70.0"]
    assert [round(c.delta, 1) for c in sn.cells] == [10.0, 15.0]
    assert all(c.best for c in sn.cells) and not any(c.best for c in model.cells)
    assert [c.text for c in _row(t, "Accuracy", "SN location").cells] == ["(2, 5)", "(2, 5)"]
    assert [c.text for c in _row(t, "F1", "SN").cells] == ["91.0", "71.0"]  # the F1-optimised neuron
    assert [c.text for c in _row(t, "F1", "SN location").cells] == ["(1, 3)", "(1, 3)"]


def test_table2_layout_marks_and_deltas():
    t = table2(fake_results())
    assert [c.text for c in _row(t, "SNt", "SNs").cells] == ["88%", "88%"]
    assert [c.text for c in _row(t, "SNt", "K (L*)").cells] == ["3 (2)", "3 (2)"]
    groups = list(dict.fromkeys(r.group for r in t.rows))
    assert groups == ["SNt", "Accuracy", "Precision", "Recall", "F1", "AR"]
    assert [c.text for c in _row(t, "AR", "SNs vs model (eq. 7)").cells] == ["70.0", "70.0"]
    vote = _row(t, "Accuracy", "SNs (maj. voting)")
    mean = _row(t, "Accuracy", "SNs (mean)")
    model = _row(t, "Accuracy", "Model")
    assert [c.text for c in vote.cells] == ["85.0", "65.0"]
    assert [round(c.delta, 1) for c in vote.cells] == [5.0, 10.0]
    assert vote.cells[0].best and model.cells[0].second  # presence: 85 > 80 > 78
    assert mean.cells[1].best and vote.cells[1].second   # counting: 66 > 65 > 55
    assert _row(t, "Accuracy", "Model (first-token logits)").baseline


def test_table5_runtime_and_speedup():
    t = table5(fake_results(), "presence")
    names = [r.method for r in t.rows]
    assert names[:2] == ["greedy generation", "first-token logits"]
    assert "L* <= 1, SNt = 80% (maj. vote)" in names
    gen = _row(t, "Model", "greedy generation")
    assert gen.cells[0].text == "yes" and gen.cells[1].text == "3" and gen.cells[4].text == "0.1000"
    early = _row(t, "SNs", "L* <= 1, SNt = 80% (maj. vote)")
    assert early.cells[1].text == "1" and early.cells[4].text == "0.0050 (20.0x faster)"
    assert early.cells[4].best and not gen.cells[4].best  # fastest runtime marked
    assert _row(t, "SNs", "SNt = 88% (maj. vote)").cells[2].best  # best accuracy 85.0


def test_table5_shows_every_early_exit_set():
    res = fake_results()
    fr = res["family"]["presence"]
    later = {**fr["early"], "max_layer": 2, "chosen": {**fr["early"]["chosen"], "snt": 0.84},
             "val": {**fr["early"]["val"], "classifier": {"k": 5, "exit_layer": 2}}}
    fr["early_sets"] = [fr["early"], later]
    names = [r.method for r in table5(res, "presence").rows]
    assert names[-4:] == ["L* <= 1, SNt = 80% (maj. vote)", "L* <= 1, SNt = 80% (mean)",
                          "L* <= 2, SNt = 84% (maj. vote)", "L* <= 2, SNt = 84% (mean)"]
    assert _row(table5(res, "presence"), "SNs", "L* <= 2, SNt = 84% (mean)").cells[1].text == "2"


def test_renderers_agree():
    t = table2(fake_results())
    md = t.to_markdown()
    assert md.startswith("**Tab. 2") and "| Metric | Method | Presence | Counting |" in md
    assert "**85.0** (+5.0)" in md and "<ins>80.0</ins>" in md and "*Model*" in md
    h = t.to_html()
    assert h.count("<tr") == len(t.rows) + 1 and 'class="baseline"' in h and 'class="best"' in h
    assert 'rowspan="4"' in h  # Accuracy: model, first token, mean, vote
    console = Console(record=True, width=160)
    console.print(t.to_rich())
    text = console.export_text()
    assert "Tab. 2" in text and "85.0 (+5.0)" in text and "SNs (maj. voting)" in text


def test_bench_table_ratios():
    t = bench_table(fake_results()["bench"])
    assert t.columns == ["ms / sample", "vs gen(128)", "vs gen(1)", "vs prefill", "vs bare exit"]
    sn = _row(t, "exit after layer 1", "SNs L1")
    assert [c.text for c in sn.cells] == ["10.50", "95.2x", "9.5x", "7.6x", "1.05"]
    assert _row(t, "model", "generate(128)").baseline
