"""The paper's tables (Tab. 1, Tab. 2, Tab. 5) and the runtime comparison, as data + three renderers.

A `Table` is a list of `Row`s of `Cell`s, grouped by a first column (the paper's "Metric"
column: Accuracy, F1, ...). Each builder reads the demo's `results` dict (see
`superneurons.report.demo`) and returns a `Table`; the same object renders as a rich table
(terminal), GitHub Markdown (`report.md`) and HTML (`report.html`), so the three never disagree.

Conventions follow the paper: numbers are percentages with one decimal; SN cells carry their
difference to the model (generated answers) in parentheses; the best value of a metric in a
column is bold and the second best underlined (Tab. 2); baseline rows are grey/italic.

- `table1(results)`: best single SN on the probing set vs the model, accuracy- and F1-optimised.
- `table2(results)`: SNt, then accuracy / precision / recall / F1 on validation for the model
  (generation and first-token logits), SNs (mean) and SNs (majority vote).
- `table5(results, family)`: L*, accuracy, F1 and time per sample with the speed-up over
  generation, for the model and for the SN sets (chosen SNt and the early-exit set).
- `bench_table(bench)`: per-sample times of `superneurons.bench` with ratios.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MODEL_NAME = "Model"
_DASH = "–"


@dataclass
class Cell:
    """One table cell: display `text`, the number behind it (`value`, for best/second marking),
    its difference to the baseline (`delta`, in points) and the marks set by `mark_best`."""

    text: str
    value: float | None = None
    delta: float | None = None
    best: bool = False
    second: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "value": self.value, "delta": self.delta, "best": self.best,
                "second": self.second}


@dataclass
class Row:
    """A row: its `group` (first column), `method` (second column), cells for the other columns."""

    group: str
    method: str
    cells: list[Cell]
    baseline: bool = False


@dataclass
class Table:
    """A titled table; `columns` are the headers after the group and method columns."""

    key: str
    title: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    caption: str = ""
    group_header: str = "Metric"
    method_header: str = "Method"

    # ---- data ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored in results.json under "tables")."""
        return {"key": self.key, "title": self.title, "caption": self.caption,
                "columns": [self.group_header, self.method_header, *self.columns],
                "rows": [{"group": r.group, "method": r.method, "baseline": r.baseline,
                          "cells": [c.to_dict() for c in r.cells]} for r in self.rows]}

    def _group_starts(self) -> list[bool]:
        out, prev = [], None
        for r in self.rows:
            out.append(r.group != prev)
            prev = r.group
        return out

    # ---- renderers ----------------------------------------------------------------------
    def to_markdown(self) -> str:
        """GitHub Markdown: bold best, <ins> second best, italic baseline method names."""
        head = [self.group_header, self.method_header, *self.columns]
        lines = [f"**{self.title}**", "", "| " + " | ".join(head) + " |",
                 "|" + "|".join([":--", ":--"] + ["--:"] * len(self.columns)) + "|"]
        for r, first in zip(self.rows, self._group_starts(), strict=True):
            method = f"*{r.method}*" if r.baseline else r.method
            cells = []
            for c in r.cells:
                t = c.text
                if c.best:
                    t = f"**{t}**"
                elif c.second:
                    t = f"<ins>{t}</ins>"
                if c.delta is not None:
                    t += f" ({c.delta:+.1f})"
                cells.append(t)
            lines.append("| " + " | ".join([r.group if first else "", method, *cells]) + " |")
        if self.caption:
            lines += ["", self.caption]
        return "\n".join(lines) + "\n"

    def to_rich(self) -> Any:
        """A `rich.table.Table` (bold best, underlined second, dim italic baselines)."""
        from rich.table import Table as RichTable

        t = RichTable(title=self.title, caption=self.caption or None, caption_justify="left")
        t.add_column(self.group_header, style="bold")
        t.add_column(self.method_header)
        for col in self.columns:
            t.add_column(col, justify="right")
        starts = self._group_starts()
        for i, (r, first) in enumerate(zip(self.rows, starts, strict=True)):
            cells = []
            for c in r.cells:
                style = "bold" if c.best else "underline" if c.second else ""
                txt = f"[{style}]{_esc(c.text)}[/]" if style else _esc(c.text)
                if c.delta is not None:
                    color = "green" if c.delta > 0 else "red" if c.delta < 0 else "white"
                    txt += f" [{color}]({c.delta:+.1f})[/]"
                cells.append(txt)
            last_of_group = i + 1 == len(self.rows) or starts[i + 1]
            t.add_row(r.group if first else "", _esc(r.method), *cells,
                      style="italic bright_black" if r.baseline else None, end_section=last_of_group)
        return t

    def to_html(self) -> str:
        """An HTML <table> (classes: baseline, best, second, delta pos/neg; styled by html.py)."""
        esc = html.escape
        out = [f'<table class="paper" id="{esc(self.key)}">',
               f"<caption><b>{esc(self.title)}</b>" + (f" {esc(self.caption)}" if self.caption else "")
               + "</caption>", "<thead><tr>"]
        out += [f"<th>{esc(h)}</th>" for h in (self.group_header, self.method_header, *self.columns)]
        out.append("</tr></thead><tbody>")
        starts = self._group_starts()
        spans = _group_spans(starts)
        for r, first, span in zip(self.rows, starts, spans, strict=True):
            cls = ' class="baseline"' if r.baseline else ""
            tr = [f"<tr{cls}>"]
            if first:
                tr.append(f'<th class="group" rowspan="{span}">{esc(r.group)}</th>')
            tr.append(f'<td class="method">{esc(r.method)}</td>')
            for c in r.cells:
                ccls = "best" if c.best else "second" if c.second else ""
                txt = esc(c.text)
                if c.delta is not None:
                    sign = "pos" if c.delta > 0 else "neg" if c.delta < 0 else "zero"
                    txt += f'<sup class="delta {sign}">({c.delta:+.1f})</sup>'
                tr.append(f'<td class="{ccls}">{txt}</td>' if ccls else f"<td>{txt}</td>")
            tr.append("</tr>")
            out.append("".join(tr))
        out.append("</tbody></table>")
        return "\n".join(out)


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _group_spans(starts: list[bool]) -> list[int]:
    spans = [0] * len(starts)
    i = 0
    while i < len(starts):
        j = i + 1
        while j < len(starts) and not starts[j]:
            j += 1
        spans[i] = j - i
        i = j
    return spans


# ----------------------------------------------------------------------------- cell helpers
def pct(value: float | None, delta_to: float | None = None) -> Cell:
    """A percentage cell (0.907 -> "90.7"), with the difference to `delta_to` in points."""
    if value is None:
        return Cell(_DASH)
    delta = None if delta_to is None else round(100 * value, 1) - round(100 * delta_to, 1)
    return Cell(f"{100 * value:.1f}", value=float(value), delta=delta)


def text(value: str) -> Cell:
    return Cell(value)


def mark_best(rows: Sequence[Row], second: bool = True, lower_is_better: bool = False,
              columns: Sequence[int] | None = None) -> None:
    """Mark the best (and second best) numeric cell of each column among `rows`, in place.

    Values are compared as displayed (rounded to the shown decimal), so equal-looking numbers tie
    and are all marked. `columns` limits the marking to those cell indices.
    """
    if not rows:
        return
    for j in columns if columns is not None else range(len(rows[0].cells)):
        vals = sorted({_shown(r.cells[j]) for r in rows if r.cells[j].value is not None},
                      reverse=not lower_is_better)
        if not vals:
            continue
        for r in rows:
            c = r.cells[j]
            if c.value is None:
                continue
            if _shown(c) == vals[0]:
                c.best = True
            elif second and len(vals) > 1 and _shown(c) == vals[1]:
                c.second = True


def _shown(c: Cell) -> str | float:
    try:
        return float(c.text.split()[0])
    except (ValueError, IndexError):
        return c.value if c.value is not None else 0.0


def family_label(name: str) -> str:
    """Column header of a question family ("presence" -> "Presence")."""
    return name.replace("_", " ").capitalize()


# ----------------------------------------------------------------------------- Tab. 1
def table1(results: dict[str, Any]) -> Table:
    """Paper Tab. 1: the single best SN on the probing set vs the model, accuracy- and F1-optimised.

    Rows per metric: the model's generated answers (POPE parser), the best SN for that metric
    (with the difference), and where that SN is (layer, neuron).
    """
    fams = list(results["families"])
    fr = results["family"]
    t = Table("tab1", "Tab. 1: best single SN on the probing set",
              [family_label(f) for f in fams],
              caption=f"Probing set ({_sizes(results, 'n_probe')} balanced samples per family). "
                      "Accuracy and F1 are optimised separately: each row group uses the neuron that is best "
                      "for that metric. Model = greedy generation parsed with the POPE rule. "
                      "Location = (layer, neuron), layers 0-based.")
    for metric, label in (("accuracy", "Accuracy"), ("f1", "F1")):
        model = [fr[f]["probe"]["model"][metric] for f in fams]
        sn = [fr[f]["probe"]["best_sn"][metric][metric] for f in fams]
        rows = [Row(label, MODEL_NAME, [pct(v) for v in model], baseline=True),
                Row(label, "SN", [pct(v, m) for v, m in zip(sn, model, strict=True)])]
        mark_best(rows, second=False)
        where = [fr[f]["probe"]["best_sn"][metric] for f in fams]
        rows.append(Row(label, "SN location", [text(f"({w['layer']}, {w['neuron']})") for w in where]))
        t.rows += rows
    return t


# ----------------------------------------------------------------------------- Tab. 2
TAB2_METHODS: tuple[tuple[str, str, bool], ...] = (
    ("model_generation", MODEL_NAME, True),
    ("model_first_token", "Model (first-token logits)", True),
    ("sns_mean", "SNs (mean)", False),
    ("sns_vote", "SNs (maj. voting)", False),
)


def table2(results: dict[str, Any]) -> Table:
    """Paper Tab. 2: SNt from the probing set, then validation metrics of the model and the SNs.

    Best per metric and family in bold, second underlined; SN cells show the difference to the
    model's generated answers. For MCQ families a question-level accuracy group is added.
    """
    fams = list(results["families"])
    fr = results["family"]
    t = Table("tab2", "Tab. 2: SNs on the validation set", [family_label(f) for f in fams],
              caption=f"Validation set ({_sizes(results, 'n_val')} samples per family). SNt chosen on the probing "
                      "set by the paper's sweep (best single-neuron score down to 3 points lower, step 1 point), "
                      "optimised for accuracy; K = number of SNs, L* = exit layer (0-based). AR: share of "
                      "(sample, SN) pairs where an SN answers as the model's generation does.")
    t.rows.append(Row("SNt", "SNs", [text(_snt_text(fr[f]["chosen"])) for f in fams]))
    t.rows.append(Row("SNt", "K (L*)", [text(f"{fr[f]['chosen']['k']} ({fr[f]['chosen']['exit_layer']})")
                                         for f in fams]))
    for metric, label in (("accuracy", "Accuracy"), ("precision", "Precision"), ("recall", "Recall"),
                          ("f1", "F1")):
        rows = []
        for key, name, baseline in TAB2_METHODS:
            cells = []
            for f in fams:
                methods = fr[f]["val"]["methods"]
                m = methods.get(key)
                ref = methods.get("model_generation", {}).get(metric)
                cells.append(pct(None if m is None else m[metric], None if baseline else ref))
            if any(c.value is not None for c in cells):
                rows.append(Row(label, name, cells, baseline=baseline))
        mark_best(rows)
        t.rows += rows
    ar = [fr[f]["val"].get("agreement", {}).get("sns_vs_model_generation") for f in fams]
    if any(v is not None for v in ar):
        t.rows.append(Row("AR", "SNs vs model (eq. 7)", [pct(v) for v in ar]))
    mcq = [f for f in fams if fr[f]["val"].get("mcq")]
    if mcq:
        rows = []
        for key, name, baseline in (("model_first_token", "Model (first-token logits)", True),
                                    ("sns_mean", "SNs (mean)", False), ("sns_vote", "SNs (vote fraction)", False)):
            cells = [pct(fr[f]["val"]["mcq"].get(key, {}).get("accuracy")) if f in mcq else Cell(_DASH)
                     for f in fams]
            rows.append(Row("MCQ question acc.", name, cells, baseline=baseline))
        mark_best(rows)
        t.rows += rows
    return t


def _snt_text(chosen: dict[str, Any] | None) -> str:
    if not chosen:
        return _DASH
    return f"{100 * chosen['snt']:.0f}%" if abs(chosen["snt"] * 100 - round(chosen["snt"] * 100)) < 1e-9 \
        else f"{100 * chosen['snt']:.1f}%"


def _sizes(results: dict[str, Any], key: str) -> str:
    ns = sorted({int(results["family"][f][key]) for f in results["families"]})
    return str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"


# ----------------------------------------------------------------------------- Tab. 5
def table5(results: dict[str, Any], family: str | None = None) -> Table:
    """Paper Tab. 5: runtime on one family's validation set (default: presence, the POPE analogue).

    Rows: the model (greedy generation, 128 new tokens at most; and first-token logits), the SNs
    of the chosen SNt (majority vote, mean) and the early-exit SN set (best SNt with L* <= the
    early-exit cap). Runtime is wall-clock seconds per sample over the whole validation set, same
    batch size for every row; the speed-up is relative to generation.
    """
    fams = list(results["families"])
    family = family or ("presence" if "presence" in fams else fams[0])
    fr = results["family"][family]
    n = fr["n_val"]
    num_layers = results["meta"]["num_layers"]
    val = fr["val"]
    secs = val["seconds"]
    gen_t = secs.get("model_generation")
    t = Table("tab5", f"Tab. 5: runtime on {family} (validation)",
              ["Autoreg.", "L*", "Acc.", "F1", "Runtime (s/sample)"], group_header="Inference strategy",
              caption=f"{n} validation samples, batch size {results['meta'].get('batch_size', '?')}, "
                      f"{results['meta'].get('device', 'cpu')}. L* is the last decoder layer run (0-based; "
                      f"the model has {num_layers}); speed-up relative to generation.")

    def runtime(total: float | None) -> Cell:
        if total is None:
            return Cell(_DASH)
        per = total / n
        c = Cell(f"{per:.4f}", value=per)
        if gen_t and total > 0 and total != gen_t:
            c.text += f" ({gen_t / total:.1f}x faster)"
        return c

    rows = []
    methods = val["methods"]
    if "model_generation" in methods:
        rows.append(Row(MODEL_NAME, "greedy generation", [text("yes"), text(str(num_layers - 1)),
                        pct(methods["model_generation"]["accuracy"]), pct(methods["model_generation"]["f1"]),
                        runtime(gen_t)], baseline=True))
    if "model_first_token" in methods:
        rows.append(Row(MODEL_NAME, "first-token logits", [text("no"), text(str(num_layers - 1)),
                        pct(methods["model_first_token"]["accuracy"]), pct(methods["model_first_token"]["f1"]),
                        runtime(secs.get("model_first_token"))], baseline=True))
    sets = [("", fr["chosen"], val)]
    if fr.get("early") and fr["early"].get("val"):
        sets.append((f"L* <= {fr['early']['max_layer']}, ", fr["early"]["chosen"], fr["early"]["val"]))
    for prefix, chosen, res in sets:
        for key, agg in (("sns_vote", "maj. vote"), ("sns_mean", "mean")):
            m = res["methods"][key]
            rows.append(Row("SNs", f"{prefix}SNt = {_snt_text(chosen)} ({agg})",
                            [text("no"), text(str(res["classifier"]["exit_layer"])), pct(m["accuracy"]),
                             pct(m["f1"]), runtime(res["seconds"].get("sns"))]))
    t.rows = rows
    mark_best(rows, second=False, columns=(2, 3))
    mark_best(rows, second=False, lower_is_better=True, columns=(4,))
    return t


# ----------------------------------------------------------------------------- bench
def bench_table(bench: dict[str, Any], title: str | None = None) -> Table:
    """The runtime comparison of `superneurons.bench` (a `BenchResult.to_dict()`): one row per
    method with ms per sample and its speed-up over generate(128), generate(1) and the prefill;
    library rows also show their ratio to the bare hooked exit at the same layer."""
    rows_in = bench["rows"]
    by_key = {r["key"]: r for r in rows_in}
    refs = [("generate_128", "vs gen(128)"), ("generate_1", "vs gen(1)"), ("prefill", "vs prefill")]
    refs = [(k, h) for k, h in refs if k in by_key]
    t = Table("bench", title or (f"Runtime: {bench['model_name']} ({bench['num_layers']} layers, hidden "
                                 f"{bench['hidden_size']})"),
              ["ms / sample", *[h for _, h in refs], "vs bare exit"], group_header="Group",
              caption=f"Batch of {bench['batch_size']} ({bench['prompt_tokens']} prompt tokens, "
                      f"{bench['image_tokens']} image tokens), {bench['device']}, {bench['threads']} threads; "
                      f"median of {bench['repeats']} interleaved runs after {bench['warmup']} warm-up. "
                      "Speed-ups are x faster; 'vs bare exit' is the library's time over the bare hooked "
                      "exit at the same layer (1.00 = the physical limit).")
    for r in rows_in:
        ms = 1000 * r["seconds_per_sample"]
        cells = [Cell(f"{ms:.2f}", value=ms)]
        for k, _ in refs:
            ref = by_key[k]["seconds_per_sample"]
            cells.append(Cell(_DASH) if k == r["key"] else Cell(f"{ref / r['seconds_per_sample']:.1f}x"))
        bare = r.get("bare_key")
        if bare and bare in by_key:
            cells.append(Cell(f"{r['seconds_per_sample'] / by_key[bare]['seconds_per_sample']:.2f}"))
        else:
            cells.append(Cell(_DASH))
        group = r["group"] if r["group"] in ("model", "input") else f"exit after layer {r['exit_layer']}"
        t.rows.append(Row(group, r["label"], cells, baseline=r["group"] == "model"))
    return t
