"""A hand-made demo `results` dict (the layout `superneurons.report.demo.run_demo` writes) for report tests."""

from __future__ import annotations

from typing import Any


def metrics(acc: float, prec: float | None = None, rec: float | None = None, f1: float | None = None,
            n: int = 24) -> dict[str, Any]:
    prec = acc if prec is None else prec
    rec = acc if rec is None else rec
    f1 = acc if f1 is None else f1
    return {"accuracy": acc, "precision": prec, "recall": rec, "f1": f1, "yes_ratio": 0.5, "n": n,
            "tp": 0, "fp": 0, "fn": 0, "tn": 0, "unparsed": 0}


def family(model_acc: float, sn_acc: float, vote_acc: float, mean_acc: float, layers: int = 4) -> dict[str, Any]:
    chosen = {"snt": 0.88, "k": 3, "exit_layer": 2, "ar": 0.7, "vote_accuracy": 0.9, "mean_accuracy": 0.89}
    early_chosen = {"snt": 0.8, "k": 2, "exit_layer": 1, "ar": 0.8}
    return {
        "n_probe": 40, "n_val": 24,
        "probe": {
            "n": 40, "model": metrics(model_acc, f1=model_acc - 0.02, n=40),
            "best_sn": {"accuracy": {"layer": 2, "neuron": 5, "accuracy": sn_acc, "precision": sn_acc,
                                     "recall": sn_acc, "f1": sn_acc - 0.01},
                        "f1": {"layer": 1, "neuron": 3, "accuracy": sn_acc - 0.02, "precision": 0.8,
                               "recall": 0.9, "f1": sn_acc + 0.01}},
            "sweep": [chosen], "chosen": chosen,
            "ar_curve": [{"snt": 0.7 + 0.01 * i, "k": 20 - i, "exit_layer": 3, "ar": 0.9 - 0.02 * i,
                          "vote_accuracy": 0.8, "mean_accuracy": 0.8} for i in range(15)],
            "beating": {"count": 3, "per_layer": [0, 2, 1, 0][:layers], "neurons": [[1, 3], [1, 5], [2, 0]]},
            "alpha_sweep": [{"alpha": a / 2, "best": 0.9 - abs(a) * 0.05, "layer": 1, "neuron": 2}
                            for a in range(-6, 7)],
        },
        "chosen": chosen,
        "early": {"max_layer": 1, "chosen": early_chosen,
                  "val": {"n": 24, "classifier": {"k": 2, "exit_layer": 1},
                          "methods": {"sns_mean": metrics(0.8), "sns_vote": metrics(0.85)},
                          "seconds": {"sns": 0.12}}},
        "val": {"n": 24, "classifier": {"k": 3, "exit_layer": 2},
                "methods": {"model_generation": metrics(model_acc), "model_first_token": metrics(model_acc - 0.05),
                            "sns_mean": metrics(mean_acc), "sns_vote": metrics(vote_acc)},
                "seconds": {"sns": 0.24, "model_generation": 2.4, "model_first_token": 0.6},
                "agreement": {"sns_vs_model_generation": 0.7}},
    }


def bench_dict() -> dict[str, Any]:
    def row(key: str, label: str, group: str, s: float, layer: int | None = None, bare: str | None = None):
        return {"key": key, "label": label, "group": group, "seconds_per_sample": s, "runs": [4 * s],
                "exit_layer": layer, "decoder_layers_run": None, "new_tokens": None, "bare_key": bare}

    return {"model_name": "tiny", "num_layers": 4, "hidden_size": 8, "batch_size": 4, "prompt_tokens": 30,
            "image_tokens": 4, "repeats": 1, "warmup": 0, "device": "cpu", "threads": 2,
            "rows": [row("generate_128", "generate(128)", "model", 1.0), row("generate_1", "generate(1)", "model", 0.1),
                     row("prefill", "prefill", "model", 0.08), row("prepare", "prepare", "input", 0.001),
                     row("bare_exit_L1", "bare exit 1", "limit", 0.01, 1),
                     row("sn_L1", "SNs L1", "library", 0.0105, 1, "bare_exit_L1")],
            "sn_sets": [], "summary": {"sn_L1_vs_generate_128": 95.2, "sn_L1_vs_generate_1": 9.5,
                                       "sn_L1_over_bare_exit": 1.05}}


def fake_results(families: tuple[str, ...] = ("presence", "counting")) -> dict[str, Any]:
    """Presence: model 0.80 vs best SN 0.90; counting: model 0.55 vs best SN 0.70."""
    fam = {"presence": family(0.80, 0.90, 0.85, 0.78), "counting": family(0.55, 0.70, 0.65, 0.66),
           "attribute": family(0.90, 0.91, 0.88, 0.90)}
    return {"meta": {"model": "tiny", "num_layers": 4, "hidden_size": 8, "seed": 0, "quick": True, "batch_size": 8,
                     "device": "cpu", "max_new_tokens": 128, "threads": 2, "seconds": 30.0,
                     "library_version": "0.1.0"},
            "families": list(families), "tab5_family": families[0], "figures": {}, "classifiers": {},
            "family": {f: fam[f] for f in families}, "bench": bench_dict()}
