"""Early-exit SN inference at the limit: speed end to end and memory, in one run.

    python benchmarks/early_exit.py                   # random LLaVA 32 x 1024 (144 image tokens), ~5 min on 2 cores
    python benchmarks/early_exit.py --quick           # a small random LLaVA, seconds (CI)
    python benchmarks/early_exit.py --generate        # also the generate(128) / generate(1) / prefill table
    python benchmarks/early_exit.py --model M --data D.jsonl [--classifier CLF]

Prints, for one model and one sample list of `--batches` x `--batch-size` samples:

1. serving speed, ms per sample, medians of interleaved rounds (every round runs every method once,
   so machine noise hits them alike):
   - `bare exit`: a forward hook raising after layer L* on batches prepared beforehand (the limit),
   - `run_prefill`: the library's hooked forward on the same prepared batches + reading the K SNs,
   - `predict, serial prep`: preparing each batch (`vlm.prepare`), then its forward, one after the other,
   - `predict(samples)`: `superneurons.inference.predict` end to end (preparation of batch i+1
     overlapped with the forward of batch i), with the check that its predictions equal the serial path's;
2. peak memory (VmHWM, whole process) of a bf16 `predict` at L*, each in a fresh process: the model
   loaded `full` (`load_model(truncate=False)`) and loaded as `clf.load_model()` gives it with no flag
   (truncated to layers 0..L* where that is exact).

Targets (issue 21): predict(samples) <= 1.05x the bare exit; default-load memory <= 25% of full.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from superneurons.activations.prefill import batches, run_prefill
from superneurons.activations.trace import LayerTrace
from superneurons.data import load_samples
from superneurons.evaluation.bench import run_bench, timing_classifier
from superneurons.inference import SuperNeuronClassifier, predict
from superneurons.models import load_model
from superneurons.report.tables import bench_table

# 32 x 1024 Llama with LLaVA-1.5-7B's MLP ratio (11008 / 4096), a CLIP tower of 4 x 512 and 12 x 12 = 144 image tokens
LARGE = {"text_layers": 32, "hidden": 1024, "heads": 16, "vision_hidden": 512, "vision_layers": 4,
         "image_size": 336, "patch_size": 28, "text_config": {"intermediate_size": 2752}}
QUICK = {"text_layers": 8, "hidden": 128, "heads": 4, "vision_hidden": 64, "vision_layers": 2,
         "image_size": 112, "patch_size": 28}
SPEED_TARGET, MEMORY_TARGET = 1.05, 0.25

_CHILD = r"""
import json, sys
import torch
torch.set_num_threads(int(sys.argv[5]))
from superneurons.data import load_samples
from superneurons.inference import SuperNeuronClassifier, predict
clf_dir, model, data, mode = sys.argv[1:5]
clf = SuperNeuronClassifier.load(clf_dir)
kw = {} if mode == "default" else {"truncate": mode == "truncated"}
vlm = clf.load_model(model, dtype="bfloat16", device="cpu", **kw)
out = predict(clf, vlm, load_samples(data, require_labels=False), batch_size=int(sys.argv[6]))
peak = next(int(x.split()[1]) * 1024 for x in open("/proc/self/status") if x.startswith("VmHWM:"))
print("RESULT " + json.dumps({"peak": peak, "layers": vlm.num_layers, "preds": out.preds.tolist(),
                              "truncated": getattr(vlm, "max_layer", None) is not None}))
"""


def synthetic_data(root: Path, n: int) -> Path:
    """At least `n` synthetic presence questions (the demo benchmark's format), written as JSONL."""
    from superneurons.synth import generate_benchmark

    scenes = max(4, n // 2)
    while True:
        path = generate_benchmark(root / f"s{scenes}", n_scenes={"val": scenes}, families=["presence"])["val"]["presence"]
        if len(load_samples(path, require_labels=False)) >= n:
            return path
        scenes *= 2


def serving(vlm, clf: SuperNeuronClassifier, samples, batch_size: int, rounds: int, warmup: int) -> dict:
    """Interleaved rounds of the four serving paths over `samples`; ms per sample (median) per method."""
    layer, n = clf.exit_layer, len(samples)
    prepared = [vlm.prepare(chunk) for chunk in batches(samples, batch_size)]

    def bare() -> None:
        for batch in prepared:
            with LayerTrace(vlm.decoder_layers, record=[], stop_after=layer) as trace:
                trace.run(vlm.model, **batch, use_cache=False)

    def library() -> torch.Tensor:
        acts = torch.cat([clf.sns.gather(run_prefill(vlm, b, clf.layers_needed, layer)).float() for b in prepared])
        return clf.predict_from_acts(acts).preds

    def serial() -> torch.Tensor:
        acts = [clf.sns.gather(run_prefill(vlm, vlm.prepare(chunk), clf.layers_needed, layer)).float()
                for chunk in batches(samples, batch_size)]
        return clf.predict_from_acts(torch.cat(acts)).preds

    def end_to_end() -> torch.Tensor:
        return predict(clf, vlm, samples, batch_size=batch_size).preds

    methods = {"bare exit (limit)": bare, "run_prefill + SNs": library, "predict, serial prep": serial,
               "predict(samples)": end_to_end}
    runs: dict[str, list[float]] = {k: [] for k in methods}
    preds: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        for r in range(warmup + rounds):
            for name, fn in methods.items():
                t0 = time.perf_counter()
                got = fn()
                dt = time.perf_counter() - t0
                if r >= warmup:
                    runs[name].append(dt)
                if got is not None:
                    preds[name] = got
    ms = {k: 1000 * statistics.median(v) / n for k, v in runs.items()}
    same = all(torch.equal(p, preds["predict, serial prep"]) for p in preds.values())
    return {"ms_per_sample": ms, "runs": runs, "predictions_identical": same, "n": n, "batch_size": batch_size,
            "exit_layer": layer, "k": clf.sns.k}


def memory(clf_dir: Path, model: str, data: Path, threads: int, batch_size: int) -> dict:
    """Peak RSS of a bf16 `predict` in a fresh process per load mode."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    out = {}
    for mode in ("full", "default"):
        res = subprocess.run([sys.executable, "-c", _CHILD, str(clf_dir), model, str(data), mode, str(threads),
                              str(batch_size)], capture_output=True, text=True, env=env)
        if res.returncode != 0:
            raise SystemExit(f"predict in a fresh process failed ({mode}):\n{res.stderr[-3000:]}")
        out[mode] = json.loads(next(x for x in res.stdout.splitlines() if x.startswith("RESULT "))[7:])
    return out


def report(console: Console, speed: dict, mem: dict | None) -> bool:
    ms = speed["ms_per_sample"]
    bare = ms["bare exit (limit)"]
    t = Table(title=f"serving, L*={speed['exit_layer']}, K={speed['k']}, {speed['n']} samples in batches of "
                    f"{speed['batch_size']}, {torch.get_num_threads()} threads (medians of {len(speed['runs'][next(iter(ms))])} "
                    "interleaved rounds)")
    for col in ("method", "ms / sample", "vs bare exit"):
        t.add_column(col, justify="left" if col == "method" else "right")
    for name, v in ms.items():
        t.add_row(name, f"{v:.1f}", f"{v / bare:.3f}")
    console.print(t)
    over = ms["predict(samples)"] / bare
    console.print(f"predictions of predict(samples) identical to the serial path: {speed['predictions_identical']}")
    ok_speed = over <= SPEED_TARGET
    console.print(f"target predict(samples) <= {SPEED_TARGET}x bare exit: {over:.3f} "
                  + ("[green]met[/]" if ok_speed else "[red]missed[/]"))
    if mem is None:
        return ok_speed and speed["predictions_identical"]
    m = Table(title="bf16 predict at L*, peak RSS of a fresh process (whole process)")
    for col in ("load", "decoder layers", "peak MiB", "vs full"):
        m.add_column(col, justify="left" if col == "load" else "right")
    full = mem["full"]["peak"]
    for mode, r in mem.items():
        label = "clf.load_model() (no flag)" if mode == "default" else "full (truncate=False)"
        m.add_row(label + (", truncated" if r["truncated"] else ""), str(r["layers"]), f"{r['peak'] / 2**20:.0f}",
                  f"{r['peak'] / full:.1%}")
    console.print(m)
    share = mem["default"]["peak"] / full
    same = mem["default"]["preds"] == mem["full"]["preds"]
    ok_mem = share <= MEMORY_TARGET
    console.print(f"target default bf16 load <= {MEMORY_TARGET:.0%} of full: {share:.1%} "
                  + ("[green]met[/]" if ok_mem else "[red]missed[/]") + f"; same predictions as full: {same}")
    return ok_speed and ok_mem and same and speed["predictions_identical"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder or hub id (default: a random LLaVA, 32 x 1024)")
    ap.add_argument("--data", type=Path, help="JSONL of samples (default: synthetic presence questions)")
    ap.add_argument("--classifier", type=Path, help="classifier folder (default: a timing-only K-neuron set)")
    ap.add_argument("--exit-layer", type=int, default=1, help="L* of the timing-only set")
    ap.add_argument("--k", type=int, default=16, help="neurons in the timing-only set")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--batches", type=int, default=8, help="batches per timed predict(samples)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds (median reported)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="a small random model, 2 rounds, 3 batches (CI)")
    ap.add_argument("--generate", action="store_true", help="also run_bench: generate(128), generate(1), prefill")
    ap.add_argument("--no-memory", action="store_true", help="skip the fresh-process memory runs")
    ap.add_argument("--json", type=Path, help="write the results as JSON here")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.batches, args.warmup = min(args.rounds, 2), min(args.batches, 3), min(args.warmup, 1)
    torch.set_num_threads(args.threads)
    console = Console(width=max(Console().width, 150))
    console.print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load "
                  f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    n = args.batches * args.batch_size
    with tempfile.TemporaryDirectory(prefix="sn-early-exit-") as tmp:
        data = args.data or synthetic_data(Path(tmp) / "data", n)
        model = args.model
        if model is None:
            from superneurons.testing.factory import make_tiny_llava

            spec = QUICK if args.quick else LARGE
            t0 = time.perf_counter()
            model = str(make_tiny_llava(Path(tmp) / "llava", **spec))
            console.print(f"built a random LLaVA {spec} in {time.perf_counter() - t0:.1f} s")
        vlm = load_model(model, dtype="float32", device="cpu")
        samples = load_samples(data, require_labels=False)[:n]
        clf = SuperNeuronClassifier.load(args.classifier) if args.classifier else \
            timing_classifier(vlm, args.exit_layer, args.k)
        console.print(f"[bold]{vlm!r}[/], {vlm.count_image_tokens(vlm.prepare(samples[:1])['input_ids'])} image "
                      f"tokens per sample; timing ...")
        speed = serving(vlm, clf, samples, args.batch_size, args.rounds, args.warmup)
        out = {"speed": speed}
        if args.generate:
            res = run_bench(vlm, samples, classifiers=[clf], batch_size=args.batch_size, repeats=args.rounds,
                            warmup=args.warmup)
            out["bench"] = res.to_dict()
            console.print(bench_table(out["bench"]).to_rich())
        del vlm
        if not args.no_memory:
            clf_dir = Path(tmp) / "clf"
            clf.save(clf_dir)
            sub = Path(tmp) / "mem.jsonl"
            sub.write_text("".join(json.dumps({"id": s.id, "image": str(s.image), "question": s.question}) + "\n"
                                   for s in samples[:args.batch_size]))
            out["memory"] = memory(clf_dir, model, sub, args.threads, args.batch_size)
        out["ok"] = report(console, speed, out.get("memory"))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
        console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
