"""Peak memory of loading a model full vs truncated after layer L* (`load_model(..., max_layer=L*)`).

Builds a mid-size random LLaVA once (default: 32 text layers, hidden 1024, intermediate 2752, vocab
8192, CLIP tower hidden 512 x 6 layers: the proportions of LLaVA-1.5-7B, whose embeddings weigh
~0.65 of a decoder layer and whose vision tower ~1.5 layers), saves it as sharded safetensors under
/tmp, then loads it in a fresh subprocess per setting and prints, per load:

- peak RSS of the process (VmHWM) and its growth over the RSS after `import torch, transformers,
  superneurons` (the model's own memory), parameter count, checkpoint files read. On CPU,
  safetensors weights are memory-mapped and only count once read, so the script reads every
  loaded weight once (as the first forward through the loaded layers does) before taking the
  peak; the RSS right after `load_model` is printed too ("lazy");
- ratios truncated / full (goal: model memory at L*=1 <= 15% of full).

On a GPU (`--device cuda`) it reports `torch.cuda.max_memory_allocated` instead of RSS.

    python benchmarks/truncated_memory.py                   # CPU, about a minute or two
    python benchmarks/truncated_memory.py --exit-layers 1 4 8 --device cuda --dtype float16
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_PATH = "/tmp/superneurons-bench/mid-llava-32x1024"
PRESET = dict(text_layers=32, hidden=1024, heads=16, vision_hidden=512, vision_layers=6, image_size=336,
              patch_size=28, text_config={"intermediate_size": 2752, "vocab_size": 8192},
              vision_config={"intermediate_size": 2048})

_CHILD = r"""
import json, sys, time
import torch, transformers, superneurons.models  # everything imported before the baseline
from transformers import AutoConfig, AutoModelForImageTextToText, LlavaForConditionalGeneration
from superneurons.models import load_model

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0

path, device, dtype, k = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
k = None if k == "full" else int(k)
AutoConfig.from_pretrained(path)  # the config classes' imports, also before the baseline
base = status("VmRSS")
t0 = time.perf_counter()
vlm = load_model(path, device=device, dtype=dtype, max_layer=k)
seconds = time.perf_counter() - t0
lazy = status("VmHWM")
with torch.no_grad():  # safetensors are mapped lazily on CPU: read every weight once, as a forward would
    for t in [*vlm.model.parameters(), *vlm.model.buffers()]:
        t.float().sum()
report = getattr(vlm, "load_report", None)
out = {"base": base, "lazy": lazy, "peak": status("VmHWM"), "rss": status("VmRSS"), "seconds": seconds,
       "params": sum(p.numel() for p in vlm.model.parameters()),
       "param_bytes": sum(p.numel() * p.element_size() for p in vlm.model.parameters()),
       "layers": vlm.num_layers, "files": len(report.files_opened) if report else None,
       "files_total": (len(report.files_opened) + len(report.files_skipped)) if report else None}
if device.startswith("cuda"):
    out["cuda_peak"] = torch.cuda.max_memory_allocated()
print("RESULT " + json.dumps(out))
"""


def build(path: Path, shard_mb: int) -> None:
    """Write the random model to `path` (once), then split its weights into ~`shard_mb` MB shards."""
    from superneurons.testing.factory import make_tiny_llava

    if not (path / "config.json").is_file():
        t0 = time.perf_counter()
        make_tiny_llava(path, **PRESET)
        print(f"built random LLaVA at {path} in {time.perf_counter() - t0:.0f} s")
    if (path / "model.safetensors").is_file():
        reshard(path, shard_mb * 2**20)


def reshard(path: Path, max_bytes: int) -> None:
    """Split `model.safetensors` into `model-0000i-of-0000n.safetensors` + index json (as save_pretrained does)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    single = path / "model.safetensors"
    groups: list[list[str]] = [[]]
    size = 0
    with safe_open(str(single), framework="pt") as f:
        meta = f.metadata()
        for key in list(f.keys()):
            sl = f.get_slice(key)
            nbytes = math.prod(sl.get_shape()) * 4
            if groups[-1] and size + nbytes > max_bytes:
                groups.append([])
                size = 0
            groups[-1].append(key)
            size += nbytes
        weight_map = {}
        for i, keys in enumerate(groups):
            name = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
            save_file({k: f.get_tensor(k) for k in keys}, str(path / name), metadata=meta)
            weight_map.update(dict.fromkeys(keys, name))
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    single.unlink()
    print(f"resharded into {len(groups)} files of <= {max_bytes >> 20} MB")


def measure(path: Path, device: str, dtype: str, k: int | None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="2", HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    res = subprocess.run([sys.executable, "-c", _CHILD, str(path), device, dtype, "full" if k is None else str(k)],
                         capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"load failed (max_layer={k}):\n{res.stderr[-3000:]}")
    line = next(x for x in res.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", default=DEFAULT_PATH)
    ap.add_argument("--exit-layers", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--shard-mb", type=int, default=200)
    args = ap.parse_args()
    path = Path(args.path)
    build(path, args.shard_mb)
    mib = 2**20
    rows = [("full", measure(path, args.device, args.dtype, None))]
    rows += [(f"L*={k}", measure(path, args.device, args.dtype, k)) for k in args.exit_layers]
    full = rows[0][1]
    gpu = args.device.startswith("cuda")

    def model_bytes(r: dict) -> int:  # the model's own memory
        return r["cuda_peak"] if gpu else r["peak"] - r["base"]

    print(f"\nrandom LLaVA, {PRESET['text_layers']} text layers x hidden {PRESET['hidden']}, {args.dtype} on "
          f"{args.device}; each load in a fresh process; model memory = "
          + ("torch.cuda.max_memory_allocated" if gpu else "peak RSS - RSS after imports"))
    print(f"{'load':<6} {'layers':>6} {'params':>13} {'files read':>10} {'load s':>7} {'peak RSS MiB':>12} "
          f"{'lazy MiB':>8} {'model MiB':>9} {'model/full':>10} {'params/full':>11}")
    for name, r in rows:
        files = f"{r['files']}/{r['files_total']}" if r["files"] is not None else "all"
        print(f"{name:<6} {r['layers']:>6} {r['params']:>13,} {files:>10} {r['seconds']:>7.2f} "
              f"{r['peak'] / mib:>12.0f} {(r['lazy'] - r['base']) / mib:>8.0f} {model_bytes(r) / mib:>9.0f} {model_bytes(r) / model_bytes(full):>10.1%} "
              f"{r['params'] / full['params']:>11.1%}")
    k1 = next((r for name, r in rows if name == "L*=1"), None)
    if k1 is not None:
        ratio = model_bytes(k1) / model_bytes(full)
        print(f"\nmodel memory at L*=1: {ratio:.1%} of full (goal <= 15%: {'met' if ratio <= 0.15 else 'NOT met'})"
              + ("" if gpu else f"; whole-process peak RSS {k1['peak'] / full['peak']:.1%} of full, "
                 f"of which {k1['base'] / mib:.0f} MiB are the imported libraries"))

if __name__ == "__main__":
    main()
