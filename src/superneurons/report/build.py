"""Turn a study's `results` dict (`superneurons.study.run_study`; the demo is one) into the report: `Document` -> report.md, report.html, figures/*.png.

`build_document(results, out_dir)` draws the figures from `results` (and embeds the PNGs the
experiments and the cascade sweep wrote under `out_dir`), lays out the paper's tables, and
writes nothing; `write_report(results, out_dir)` writes the three outputs. Both work from a
`results.json` read back, so a report can be rebuilt without running the model again:

    >>> write_report(json.loads(Path("out/results.json").read_text()), "out")   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from superneurons.constants import FIGURE_DIR, REPORT_HTML, REPORT_MD, RESULTS_JSON
from superneurons.report import figures as F
from superneurons.report.analysis import families_matching_model
from superneurons.report.disclosure import training_disclosure
from superneurons.report.document import Bullets, Document, Figure, Section, SimpleTable
from superneurons.report.html import write_html
from superneurons.report.tables import bench_table, early_sets, family_label, table1, table2, table5
from superneurons.utils.files import json_text


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def summary_bullets(results: dict[str, Any]) -> list[str]:
    """The headline findings, in words."""
    fams = list(results["families"])
    fr = results["family"]
    out = []
    disclosure = training_disclosure(results.get("model_training"))
    if disclosure:
        out.append(disclosure)
    wins = families_matching_model(results)
    out.append(f"SNs (mean or majority vote) match or beat the model's generated answers in validation accuracy "
               f"on **{len(wins)} of {len(fams)}** datasets" + (f" ({', '.join(wins)})." if wins else "."))
    accs = ", ".join(f"{f} {_pct(fr[f]['val']['methods'].get('model_generation', {}).get('accuracy'))}"
                     for f in fams)
    out.append(f"Model accuracy (greedy generation, POPE parser) on validation: {accs}.")
    t5 = results.get("tab5_family")
    gen = fr[t5]["val"]["methods"].get("model_generation", {}).get("accuracy") if t5 in fr else None
    for e in early_sets(fr[t5]) if gen else []:
        best = max(e["val"]["methods"]["sns_mean"]["accuracy"], e["val"]["methods"]["sns_vote"]["accuracy"])
        verdict = ("matches or beats the model" if best >= gen else
                   "does not reach the model" if best - 0.5 > 0.05 else "is at chance: no early exit on this model")
        out.append(f"Early exit on {t5}: the best SN set with L* <= {e['max_layer']} (L* = "
                   f"{e['val']['classifier']['exit_layer']}, K = {e['val']['classifier']['k']}) reaches "
                   f"{_pct(best)} accuracy, **{100 * best / gen:.0f}%** of the model's {_pct(gen)}: "
                   f"early exit at L* <= {e['max_layer']} {verdict}.")
    bench = results.get("bench")
    if bench:
        s = bench["summary"]
        for k in sorted({int(key.split("_")[1][1:]) for key in s if key.startswith("sn_L")}):
            parts = [f"{s[f'sn_L{k}_vs_{ref}']:.1f}x faster than {name}"
                     for ref, name in (("generate_128", "generate(128)"), ("generate_1", "generate(1)"))
                     if f"sn_L{k}_vs_{ref}" in s]
            if parts:
                out.append(f"SN inference at L* = {k}: " + ", ".join(parts)
                           + f"; {s[f'sn_L{k}_over_bare_exit']:.2f}x the bare hooked exit (the physical limit).")
    meta = results["meta"]
    if meta.get("seconds"):
        n = meta.get("threads", "?")
        out.append(f"The whole run took {meta['seconds'] / 60:.1f} minutes on {n} CPU thread{'' if n == 1 else 's'}"
                   f" ({meta.get('device', 'cpu')}).")
    return out


def setup_lines(results: dict[str, Any]) -> list[str]:
    """What was run, from the results' own options (the study file's)."""
    meta = results["meta"]
    o = meta.get("options") or {}
    step, depth = o.get("step", 0.01), o.get("depth", 0.03)
    data = meta.get("data_description") or ("Per dataset, the probing set and the validation set named in the "
                                            "study file" + (f" ({meta['study_file']})" if meta.get("study_file") else "")
                                            + ".")
    caps = meta.get("early_max_layer")
    caps = [caps] if isinstance(caps, int) else list(caps or [])
    return [f"Datasets: {', '.join(family_label(f) for f in results['families'])}. {data}",
            f"Alg. 1: residual stream after every decoder layer at the {o.get('token', 'first')} answer position, "
            f"alpha = {o.get('alpha', 0.0):g}, every neuron scored; SNt swept from the best neuron down "
            f"{100 * depth:g} points in {100 * step:g}-point steps and chosen by majority-vote "
            f"{o.get('metric', 'accuracy')} on the probing set"
            + (f"; early-exit SN sets restricted to L* <= {', '.join(map(str, caps))}" if caps else "")
            + ". Alg. 2: the library's `SuperNeuronClassifier.predict` with early exit at L*, aggregated by mean "
              "and majority vote.",
            f"Baselines: the model's greedy generation (max {meta.get('max_new_tokens', 128)} new tokens, "
            "POPE parser) and its first-token yes/no logits."]


def _external(out_dir: Path | None, rel: str | None, name: str, title: str, caption: str = "") -> Figure | None:
    if out_dir is None or not rel:
        return None
    p = out_dir / rel
    return Figure.from_file(p, name, title, caption) if p.is_file() else None


def build_document(results: dict[str, Any], out_dir: str | Path | None = None) -> Document:
    """The report's sections: summary, setup, tables, figures, runtime, experiments."""
    out = Path(out_dir) if out_dir is not None else None
    meta = results["meta"]
    fams = list(results["families"])
    where = meta.get("data") or f"{len(fams)} dataset{'s' if len(fams) != 1 else ''}"
    doc = Document(
        meta.get("title") or "Super Neurons study report",
        f"Model: {meta['model']} ({meta['num_layers']} decoder layers, hidden {meta['hidden_size']}); {where}; "
        f"superneurons {meta.get('library_version', '?')}.")
    doc.sections.append(Section("Summary", [Bullets(summary_bullets(results))]))
    setup: list[Any] = list(setup_lines(results))
    if results.get("datasets"):
        fr = results["family"]
        setup.append(SimpleTable("Datasets", ["dataset", "probing samples", "validation samples", "probing set",
                                              "validation set"],
                                 [[f, str(fr[f]["n_probe"]), str(fr[f]["n_val"]), src["probe"], src["val"]]
                                  for f, src in results["datasets"].items() if f in fr]))
    doc.sections.append(Section("Setup", setup))
    doc.sections.append(Section("Tab. 1: best single SN (probing set)", [table1(results)]))
    doc.sections.append(Section("Tab. 2: SNs on validation", [table2(results)]))
    t5 = [table5(results, results.get("tab5_family"))]
    doc.sections.append(Section("Tab. 5: runtime", t5))

    figs: list[Any] = [F.sns_per_layer_figure(results), F.location_figure(results)]
    over = _external(out, results.get("figures", {}).get("overlap"), "appfig2_overlap",
                     "App. Fig. 2: SN overlap across datasets",
                     "Left: on how many datasets each neuron beats the model; middle: neurons beating it on "
                     "every dataset; right: pairwise counts of neurons beating the model on both datasets.")
    figs += [over] if over else ["App. Fig. 2 (overlap): not available in this run."]
    figs += [F.agreement_figure(results), F.alpha_figure(results)]
    size = _external(out, results.get("figures", {}).get("probe_size"), "fig5_probe_size",
                     "Fig. 5: SN validation metrics vs probing set size",
                     "Solid: SNs (mean); dotted: SNs (vote); dashed: the model. Balanced probing subsets of each size.")
    figs += [size] if size else ["Fig. 5 (probing set size): not available in this run."]
    examples = F.qualitative_figure(results, out) if out is not None else None
    if examples is not None:
        figs.append(examples)
    doc.sections.append(Section("Figures", figs))

    runtime: list[Any] = []
    bench = results.get("bench")
    if bench:
        runtime += [bench_table(bench), F.runtime_figure(bench)]
    casc = results.get("cascade")
    if casc and casc.get("rows"):
        runtime.append(SimpleTable(
            f"Cascade on {casc['family']} (validation): SNs answer, the model decides when |s - 0.5| < margin",
            ["margin", "deferred", "avg layers", "acc.", "F1", "ms / sample"],
            [[f"{r['margin']:g}", _pct(r["deferral_rate"]), f"{r['avg_layers']:.2f}", _pct(r["accuracy"]),
              _pct(r["f1"]), f"{1000 * r['time_per_sample']:.2f}"] for r in casc["rows"]]))
        cf = _external(out, results.get("figures", {}).get("cascade"), "cascade_sweep", "Cascade sweep")
        if cf:
            runtime.append(cf)
    if casc and casc.get("error"):
        runtime.append(f"Cascade sweep failed: {casc['error']}")
    if runtime:
        doc.sections.append(Section("Runtime comparison", runtime))

    exps = results.get("experiments") or {}
    blocks: list[Any] = []
    if exps.get("error"):
        blocks.append(f"The experiments run stopped: {exps['error']}")
    for e in (exps.get("results") or {}).values():
        blocks.append(SimpleTable(f"{e['title']} (paper {e['paper']})", e["columns"], e["rows"],
                                  caption="Files: " + ", ".join(e.get("files", []))))
        for rel in e.get("figures", []):
            if rel in (results.get("figures", {}).get("overlap"), results.get("figures", {}).get("probe_size")):
                continue
            f = _external(out, rel, f"exp_{Path(rel).stem}", f"{e['title']}")
            if f:
                blocks.append(f)
    if exps.get("skipped"):
        blocks.append(Bullets([f"{n}: skipped ({why})" for n, why in exps["skipped"].items()]))
    if blocks:
        doc.sections.append(Section("Experiments (paper ablations)", blocks))

    files = [f"`{RESULTS_JSON}`: every number above", f"`{FIGURE_DIR}/`: the figures as PNG"]
    for fam, rel in (results.get("classifiers") or {}).items():
        files.append(f"`{rel}`: the {fam} SN classifier (`superneurons predict --classifier {rel}`)")
    doc.sections.append(Section("Files", [Bullets(files)]))
    return doc


def write_report(results: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write report.md, report.html, figures/*.png and results.json into `out_dir`; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = build_document(results, out)
    results["tables"] = {t.key: t.to_dict() for t in doc.tables()}
    fig_dir = out / FIGURE_DIR
    doc.write_figures(fig_dir)
    md = out / REPORT_MD
    md.write_text(doc.to_markdown(FIGURE_DIR), encoding="utf-8")
    html_path = write_html(doc, out / REPORT_HTML)
    js = out / RESULTS_JSON
    js.write_text(json_text(results, 1, default=str) + "\n", encoding="utf-8")
    return {"html": html_path, "markdown": md, "json": js, "figures": fig_dir}
