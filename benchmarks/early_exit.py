"""Early-exit runtime: SN inference vs generate(128), generate(1), the prefill and the bare hooked exit.

    python benchmarks/early_exit.py                       # the shipped demo model (if present) + a 32-layer random LLaVA
    python benchmarks/early_exit.py --model M --data D    # your model and data (plus --classifier CLF)
    python benchmarks/early_exit.py --skip-large          # without the 32-layer model

For each model: one prepared batch, one process, every method timed in interleaved runs
(`superneurons.evaluation.bench.run_bench`), printed as ms per sample and ratios. The large model is a random
`LlavaForConditionalGeneration` built with `superneurons.testing.factory` (32 decoder layers, hidden
1024, 144 image tokens), to show how the speed-up of exiting after layer 1 grows with depth.

Targets (on 2 CPU cores): at L* = 1 on the 32-layer model, >= 10x vs generate(1) and >= 40x vs
generate(128); the library's SN inference within ~10% of the bare hooked exit.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from superneurons.data import load_samples
from superneurons.errors import ModelError
from superneurons.evaluation.bench import run_bench
from superneurons.inference.classifier import SuperNeuronClassifier
from superneurons.models import load_model
from superneurons.report.tables import bench_table

# 32 x 1024 Llama with LLaVA-1.5-7B's MLP ratio (11008 / 4096), a CLIP tower of 4 x 512 and 12 x 12 = 144
# image tokens; the tower costs less than one decoder layer (printed), as CLIP-L does next to a 7B LM
LARGE = {"text_layers": 32, "hidden": 1024, "heads": 16, "vision_hidden": 512, "vision_layers": 4,
         "image_size": 336, "patch_size": 28, "text_config": {"intermediate_size": 2752}}
TARGETS = {"generate_1": 10.0, "generate_128": 40.0}
OVERHEAD = 1.10


def synthetic_data(root: Path, n: int = 8) -> Path:
    """A few synthetic presence questions (the demo benchmark's format)."""
    from superneurons.synth import generate_benchmark

    return generate_benchmark(root, n_scenes={"val": n}, families=["presence"])["val"]["presence"]


def vision_share(vlm) -> float:
    """The vision tower's parameters over one decoder layer's (a proxy for their compute per token)."""
    tower = sum(p.numel() for p in vlm.model.model.vision_tower.parameters())
    layer = sum(p.numel() for p in vlm.decoder_layers[0].parameters())
    return tower / layer


def bench_one(console: Console, model: str, data: Path, classifiers: list[Path], exit_layers: list[int], args) -> dict:
    t0 = time.perf_counter()
    vlm = load_model(model, dtype="float32", device=args.device)
    console.print(f"vision tower = {vision_share(vlm):.2f} decoder layers of parameters")
    samples = load_samples(data, require_labels=False)
    clfs = [SuperNeuronClassifier.load(c) for c in classifiers]
    console.print(f"[bold]{vlm!r}[/] loaded in {time.perf_counter() - t0:.1f} s; timing ...")
    res = run_bench(vlm, samples, classifiers=clfs, exit_layers=exit_layers, batch_size=args.batch_size,
                    max_new_tokens=128, repeats=args.repeats, warmup=args.warmup)
    d = res.to_dict()
    console.print(bench_table(d).to_rich())
    for layer in res.exit_layers:
        ratios = ", ".join(f"{res.speedup(f'sn_L{layer}', ref):.1f}x vs {ref}" for ref in ("generate_128", "generate_1",
                                                                                          "prefill"))
        console.print(f"L*={layer}: library {ratios}; library / bare exit = {res.overhead(layer):.3f}; "
                      f"bare exit {res.speedup(f'bare_exit_L{layer}', 'generate_1'):.1f}x vs generate_1")
    gen = res.row("generate_128")
    console.print(f"generate(128) produced {gen.new_tokens:.1f} new tokens per sample on average")
    d["vision_tower_layers"] = vision_share(vlm)
    return d


def check_targets(console: Console, d: dict) -> bool:
    s = d["summary"]
    ok = True
    for ref, target in TARGETS.items():
        got = s[f"sn_L1_vs_{ref}"]
        ok &= got >= target
        console.print(f"target L*=1 vs {ref} >= {target:.0f}x: {got:.1f}x "
                      + ("[green]met[/]" if got >= target else "[red]missed[/]"))
    over = s["sn_L1_over_bare_exit"]
    ok &= over <= OVERHEAD
    console.print(f"target library within {100 * (OVERHEAD - 1):.0f}% of the bare exit: {over:.3f} "
                  + ("[green]met[/]" if over <= OVERHEAD else "[red]missed[/]"))
    return ok


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder or hub id (default: the shipped demo model)")
    ap.add_argument("--data", type=Path, help="JSONL of samples (default: synthetic presence questions)")
    ap.add_argument("--classifier", type=Path, action="append", default=[], help="classifier folder (repeatable)")
    ap.add_argument("--exit-layer", type=int, action="append", default=None, help="timing SN set at this layer")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-large", action="store_true", help="do not build and time the 32-layer model")
    ap.add_argument("--json", type=Path, help="write every table as JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(width=max(Console().width, 150))
    console.print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="sn-bench-") as tmp:
        data = args.data or synthetic_data(Path(tmp) / "data")
        model = args.model
        if model is None:
            from superneurons.synth import demo_model_path

            try:
                model = str(demo_model_path())
            except ModelError as exc:
                console.print(f"[yellow]skipping the demo model:[/] {exc}")
        if model is not None:
            out["model"] = bench_one(console, model, data, args.classifier, args.exit_layer or [1], args)
        if not args.skip_large:
            from superneurons.testing.factory import make_tiny_llava

            t0 = time.perf_counter()
            path = make_tiny_llava(Path(tmp) / "llava-32x1024", **LARGE)
            console.print(f"built a random LLaVA with {LARGE} in {time.perf_counter() - t0:.1f} s")
            out["large"] = bench_one(console, str(path), data, [], [1], args)
            check_targets(console, out["large"])
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
        console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
