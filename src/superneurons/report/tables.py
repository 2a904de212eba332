"""The paper's tables (Tab. 1, Tab. 2, Tab. 5) and the runtime comparison, as data + three renderers.

Each builder reads a study's `results` dict (see `superneurons.study.run`) and returns a
`superneurons.report.tabular.Table`, which renders as a rich table, Markdown and HTML.

Conventions follow the paper: numbers are percentages with one decimal; SN cells carry their
difference to the model (generated answers) in parentheses; the best value of a metric in a
column is bold and the second best underlined (Tab. 2); baseline rows are grey/italic.

- `table1(results)`: best single SN on the probing set vs the model, accuracy- and F1-optimised.
- `table2(results)`: SNt, then accuracy / precision / recall / F1 on validation for the model
  (generation and first-token logits), SNs (mean) and SNs (majority vote).
- `table5(results, family)`: L*, accuracy, F1 and time per sample with the speed-up over
  generation, for the model and for the SN sets (chosen SNt and the early-exit set).
- `bench_table(bench)`: per-sample times of `superneurons.evaluation.bench` with ratios.
"""

from __future__ import annotations

from typing import Any

from superneurons.report.tabular import DASH as _DASH
from superneurons.report.tabular import Cell, Row, Table, mark_best, pct, text

MODEL_NAME = "Model"


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
    ref = ("first-token yes/no logits (the study ran without generation)"
           if any(fr[f].get("model_reference") == "first-token logits" for f in fams)
           else "greedy generation parsed with the POPE rule")
    t = Table("tab1", "Tab. 1: best single SN on the probing set",
              [family_label(f) for f in fams],
              caption=f"Probing set ({_sizes(results, 'n_probe')} samples per dataset). "
                      "Accuracy and F1 are optimised separately: each row group uses the neuron that is best "
                      f"for that metric. Model = {ref}. Location = (layer, neuron), layers 0-based.")
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
    o = results["meta"].get("options") or {}
    t = Table("tab2", "Tab. 2: SNs on the validation set", [family_label(f) for f in fams],
              caption=f"Validation set ({_sizes(results, 'n_val')} samples per dataset). SNt chosen on the probing "
                      f"set by the paper's sweep (best single-neuron score down to {100 * o.get('depth', 0.03):g} "
                      f"points lower, step {100 * o.get('step', 0.01):g} point), optimised for "
                      f"{o.get('metric', 'accuracy')}; K = number of SNs, L* = exit layer (0-based). AR: share of "
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
def early_sets(fr: dict[str, Any]) -> list[dict[str, Any]]:
    """A dataset's evaluated early-exit SN sets, by cap (results before `early_sets` hold one `early`)."""
    sets = fr.get("early_sets")
    if sets is None:
        sets = [fr["early"]] if fr.get("early") else []
    return [e for e in sets if e.get("val")]


def table5(results: dict[str, Any], family: str | None = None) -> Table:
    """Paper Tab. 5: runtime on one family's validation set (default: presence, the POPE analogue).

    Rows: the model (greedy generation, 128 new tokens at most; and first-token logits), the SNs
    of the chosen SNt (majority vote, mean) and each early-exit SN set (best SNt with L* <= its
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
    sets += [(f"L* <= {e['max_layer']}, ", e["chosen"], e["val"]) for e in early_sets(fr)]
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
    """The runtime comparison of `superneurons.evaluation.bench` (a `BenchResult.to_dict()`): one row per
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
