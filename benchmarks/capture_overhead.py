"""Capture overhead and early-exit speed-ups, measured side by side on one random LLaVA.

Builds a random LLaVA from a config (default: text hidden 512, 8 layers, vocab 32064, CLIP
tower at 224 px; `--preset llava-1.5-7b` for LLaVA-1.5-7B's real sizes on a GPU), saves it,
loads it back through `load_model`, prepares one batch and times, interleaved round-robin:

- bare prefill: `model(**batch, logits_to_keep=1)` (full forward, next-token logits only, as the
                prefill of `generate` computes them)
- hooks only:   the same forward inside a `LayerTrace` recording every layer (pure hook cost)
- capture:      `run_prefill` over all layers (what `capture` runs per batch; it stops after the
                last layer, so the final norm and LM head are skipped)
- exit @1:      `run_prefill(exit_layer=1)`
- generate(1):  `model.generate(**batch, max_new_tokens=1)`

and prints medians and ratios to the bare prefill (target for hooks-only and capture: <= 1.03).

    python benchmarks/capture_overhead.py                  # CPU, about a minute or two
    python benchmarks/capture_overhead.py --preset llava-1.5-7b --device cuda --dtype float16
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import torch

from superneurons.activations import run_prefill
from superneurons.activations.trace import LayerTrace
from superneurons.data.samples import Sample
from superneurons.models import load_model
from superneurons.testing.factory import make_tiny_llava

PRESETS = {
    "mid": dict(text_layers=8, hidden=512, vision_hidden=256, image_size=224, vision_layers=4, heads=8,
                text_config={"intermediate_size": 1376, "vocab_size": 32064}),
    "llava-1.5-7b": dict(text_layers=32, hidden=4096, vision_hidden=1024, image_size=336, vision_layers=24,
                         heads=32, text_config={"intermediate_size": 11008, "vocab_size": 32064},
                         vision_config={"intermediate_size": 4096, "num_attention_heads": 16,
                                        "projection_dim": 768}),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="mid")
    ap.add_argument("--layers", type=int, help="override the number of text layers")
    ap.add_argument("--hidden", type=int, help="override the text hidden size")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    spec = dict(PRESETS[args.preset])
    if args.layers:
        spec["text_layers"] = args.layers
    if args.hidden:
        spec["hidden"] = args.hidden
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        make_tiny_llava(tmp, dtype=args.dtype if args.device != "cpu" else "float32", **spec)
        vlm = load_model(tmp, dtype=args.dtype, device=args.device)
        build_s = time.perf_counter() - t0
    from PIL import Image

    questions = ["Is there a dog in the image ?", "Is the cup on the left of the table ? Answer with yes or no .",
                 "Is there a red car ?", "Is the person in front of the bus from the viewer perspective ?"]
    samples = [Sample(f"b{i}", Image.new("RGB", (320, 240), (30 * i, 120, 200)), questions[i % len(questions)], "yes")
               for i in range(args.batch)]
    batch = vlm.prepare(samples)
    device = vlm.device

    def bare() -> None:
        with torch.inference_mode():
            vlm.model(**batch, use_cache=False, logits_to_keep=1)

    def hooks_only() -> None:
        with torch.inference_mode(), LayerTrace(vlm.decoder_layers) as trace:
            trace.run(vlm.model, **batch, use_cache=False, logits_to_keep=1)

    def capture_all() -> None:
        run_prefill(vlm, batch)

    def exit_1() -> None:
        run_prefill(vlm, batch, exit_layer=1)

    def generate_1() -> None:
        with torch.inference_mode():
            vlm.model.generate(**batch, max_new_tokens=1, do_sample=False)

    runs: dict[str, Callable[[], None]] = {"bare prefill": bare, "hooks only (all layers)": hooks_only,
                                           "capture (all layers)": capture_all, "early exit @ layer 1": exit_1,
                                           "generate(max_new_tokens=1)": generate_1}
    times: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():  # warm-up
        fn()
    names = list(runs)
    for r in range(args.repeats):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate: no fixed position in a round
        for name in order:
            _sync(device)
            t, c = time.perf_counter(), time.process_time()
            runs[name]()
            _sync(device)
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)

    # in-situ: the time spent inside the hooks themselves during one full forward
    in_hooks = [0.0]

    class TimedTrace(LayerTrace):
        def _hook(self, idx):  # type: ignore[override]
            inner = super()._hook(idx)

            def hook(*a, **k):
                t = time.perf_counter()
                try:
                    return inner(*a, **k)
                finally:
                    in_hooks[0] += time.perf_counter() - t

            return hook

    hook_share = []
    for _ in range(3):
        in_hooks[0] = 0.0
        t = time.perf_counter()
        with torch.inference_mode(), TimedTrace(vlm.decoder_layers) as trace:
            trace.run(vlm.model, **batch, use_cache=False, logits_to_keep=1)
        _sync(device)
        hook_share.append(in_hooks[0] / (time.perf_counter() - t))

    seq = batch["input_ids"].shape[1]
    print(f"model: random LLaVA ({args.preset}), {vlm.num_layers} layers, hidden {vlm.hidden_size}, "
          f"vocab {vlm.text_config.vocab_size}, {vlm.dtype}, {device}; built+loaded in {build_s:.1f}s")
    print(f"batch: {args.batch} samples x {seq} tokens; {args.repeats} interleaved repeats, "
          f"{torch.get_num_threads()} threads")
    bare_min, bare_cpu = min(times["bare prefill"]), statistics.median(cpu["bare prefill"])
    ratio = {k: min(v) / bare_min for k, v in times.items()}
    cpu_ratio = {k: statistics.median(v) / bare_cpu for k, v in cpu.items()}
    print(f"{'run':<30}{'min ms':>10}{'median ms':>11}{'cpu ms':>10}{'ratio(min)':>12}{'ratio(cpu)':>12}")
    for name, ts in times.items():
        print(f"{name:<30}{min(ts) * 1e3:>10.1f}{statistics.median(ts) * 1e3:>11.1f}"
              f"{statistics.median(cpu[name]) * 1e3:>10.1f}{ratio[name]:>12.3f}{cpu_ratio[name]:>12.3f}")
    print("ratio(min) = min wall time / min wall time of bare prefill (robust to other load on the machine);")
    print("ratio(cpu) = median process CPU time / that of bare prefill")
    print(f"capture overhead, hooks on every layer / bare prefill: {ratio['hooks only (all layers)']:.3f} (min), "
          f"{cpu_ratio['hooks only (all layers)']:.3f} (cpu); time inside hooks: "
          f"{100 * statistics.median(hook_share):.3f}% of the forward (target: ratio <= 1.03)")
    print(f"speed-up of early exit @ layer 1: {1 / ratio['early exit @ layer 1']:.2f}x vs full prefill, "
          f"{ratio['generate(max_new_tokens=1)'] / ratio['early exit @ layer 1']:.2f}x vs generate(1) (min times)")


if __name__ == "__main__":
    main()
