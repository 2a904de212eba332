"""Throughput of first-token capture with vs without per-image prefix reuse (POPE: 6 questions per image).

Builds (once, shared with truncated_memory.py) a mid-size random LLaVA whose chat template puts the
image first (`USER: <image>\\n{question} ASSISTANT:`; 32 text layers, hidden 1024, CLIP tower at
336 px / patch 28 = 144 image tokens), writes `--images` PNGs with 6 POPE-style questions each,
and times (wall clock and process CPU time), interleaved round-robin over `--repeats` rounds:

- plain:  `capture(vlm, samples, layers=[k], exit_layer=k, batch_size=6)` (every prompt re-encodes
          its image and the shared prefix);
- reuse:  `capture_prefix(vlm, samples, [k], k, batch_size=6)` (image + prefix once per image into
          a KV cache, then the 6 suffixes as one batch);

for exit layers k in `--exit-layers` (default 1, 8 and the last layer), and prints samples/s, the
ratios (goal: >= 3x at 6 questions per image) and the largest difference between the two paths'
activations. One torch thread by default: on a shared, oversubscribed CPU, OpenMP threads spin
while waiting for each other and the wall clock measures the neighbours; the CPU-time ratio is
the robust figure there. On a quiet machine pass `--threads N`.

    python benchmarks/prefix_reuse.py                 # CPU, about two minutes
    python benchmarks/prefix_reuse.py --images 4 --threads 2 --exit-layers 1 31
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from superneurons.activations import capture
from superneurons.activations.prefix import capture_prefix, prefix_reuse_support
from superneurons.data.samples import Sample
from superneurons.models import load_model

DEFAULT_PATH = "/tmp/superneurons-bench/mid-llava-32x1024"
PRESET = dict(text_layers=32, hidden=1024, heads=16, vision_hidden=512, vision_layers=6, image_size=336,
              patch_size=28, text_config={"intermediate_size": 2752, "vocab_size": 8192},
              vision_config={"intermediate_size": 2048})
OBJECTS = ["dog", "cat", "car", "cup", "bus", "bird", "chair", "book", "bottle", "person", "truck", "kite"]


def pope_samples(root: Path, images: int, per_image: int, seed: int = 0) -> list[Sample]:
    """`images` random PNGs, each asked `per_image` POPE questions (ordered image by image)."""
    from PIL import Image

    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(images):
        path = root / f"img{i}.png"
        Image.fromarray((torch.rand(336, 336, 3, generator=gen) * 255).byte().numpy()).save(path)
        for j, obj in enumerate(rng.sample(OBJECTS, per_image)):
            q = f"Is there a {obj} in the image ? Answer the question using a single word ."
            out.append(Sample(f"i{i}q{j}", str(path), q, ("yes", "no")[j % 2]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", default=DEFAULT_PATH)
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--questions", type=int, default=6, help="questions per image")
    ap.add_argument("--exit-layers", type=int, nargs="+", help="default: 1, 8 and the last layer")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path = Path(args.path)
    if not (path / "config.json").is_file():
        from superneurons.testing.factory import make_tiny_llava

        make_tiny_llava(path, **PRESET)
    vlm = load_model(str(path), device="cpu", dtype="float32")
    ok, why = prefix_reuse_support(vlm)
    print(f"{vlm!r}\nprefix reuse: {why}")
    with tempfile.TemporaryDirectory() as tmp:
        samples = pope_samples(Path(tmp), args.images, args.questions)
        n = len(samples)
        enc = vlm.prepare(samples[:1])
        print(f"{args.images} images x {args.questions} questions = {n} samples; "
              f"{enc['input_ids'].shape[1]} prompt tokens each ({int((enc['input_ids'] == vlm.model.config.image_token_id).sum())} image tokens)")
        print(f"\n{'exit layer':<10} {'plain s':>8} {'reuse s':>8} {'plain/s':>8} {'reuse/s':>8} {'speed-up':>8} "
              f"{'cpu plain':>9} {'cpu reuse':>9} {'cpu ratio':>9} {'max |diff|':>10}")
        for k in args.exit_layers or [1, 8, vlm.num_layers - 1]:
            runs = {"plain": lambda k=k: capture(vlm, samples, layers=[k], exit_layer=k, batch_size=args.questions,
                                                 progress=False),
                    "reuse": lambda k=k: capture_prefix(vlm, samples, [k], k, batch_size=args.questions)}
            results = {name: fn() for name, fn in runs.items()}  # warm-up, and the equality check
            wall: dict[str, list[float]] = {"plain": [], "reuse": []}
            cpu: dict[str, list[float]] = {"plain": [], "reuse": []}
            for _ in range(args.repeats):
                for name, fn in runs.items():
                    c0, t0 = time.process_time(), time.perf_counter()
                    fn()
                    wall[name].append(time.perf_counter() - t0)
                    cpu[name].append(time.process_time() - c0)
            plain, reuse = statistics.median(wall["plain"]), statistics.median(wall["reuse"])
            cplain, creuse = statistics.median(cpu["plain"]), statistics.median(cpu["reuse"])
            diff = (results["plain"] - results["reuse"]).abs().max().item()
            label = f"{k} (last)" if k == vlm.num_layers - 1 else f"{k}"
            print(f"{label:<10} {plain:>8.2f} {reuse:>8.2f} {n / plain:>8.2f} {n / reuse:>8.2f} {plain / reuse:>7.2f}x "
                  f"{cplain:>9.2f} {creuse:>9.2f} {cplain / creuse:>8.2f}x {diff:>10.1e}")
    print(f"\ngoal: >= 3x throughput at {args.questions} questions per image (medians of {args.repeats} rounds, "
          f"{args.threads} torch thread(s))")


if __name__ == "__main__":
    main()
