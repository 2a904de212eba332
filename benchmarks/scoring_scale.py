"""Scoring at the paper's scale: N=3000 x L=32 x D=4096 fp16 activations from an on-disk store.

Writes a random fp16 activation store (the `superneurons.activations.store` layout: manifest.json + sample
shards), then in a fresh process measures:
- the time to read the store once (`iter_layer_chunks`, the same chunks scoring reads),
- the time of `probe_neurons` (accuracy, precision, recall, F1 of every neuron, streamed over the
  store, keeping the neurons the sweep can select) + a full SNt sweep (the paper's protocol:
  3 points below the best neuron in steps of 1 point, or `--step 0.001` for 0.1 point),
and prints their ratio (target <= 2x) and the peak memory (max RSS of the measuring process)
against the fp16 tensor size (target < 3x). The machine's load average is printed too: on a
shared CPU every figure moves with it.

    python benchmarks/scoring_scale.py [--n 3000 --layers 32 --hidden 4096] [--step 0.01] [--threads T]
        [--dir /tmp/sn-bench-store] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch


def write_store(directory: Path, n: int, n_layers: int, d: int, shard_size: int = 256, seed: int = 0) -> None:
    """A complete fp16 store of random activations with balanced labels, shard by shard."""
    from safetensors.torch import save_file

    from superneurons.activations.store import ACTIVATIONS_KEY, FORMAT_VERSION, RANGE_KEY
    from superneurons.constants import MANIFEST_NAME, SHARD_PATTERN

    directory.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    labels = ["yes" if i % 2 == 0 else "no" for i in range(n)]
    shards = []
    for i, start in enumerate(range(0, n, shard_size)):
        stop = min(start + shard_size, n)
        acts = torch.randn(stop - start, n_layers, d, generator=g).half()
        name = SHARD_PATTERN.format(i)
        save_file({ACTIVATIONS_KEY: acts, RANGE_KEY: torch.tensor([start, stop])}, str(directory / name),
                  metadata={"start": str(start), "stop": str(stop), "format": "pt"})
        shards.append({"file": name, "start": start, "stop": stop})
    manifest = {
        "format_version": FORMAT_VERSION, "model": "random", "family": "none",
        "fingerprint": {"architecture": "Random", "config_hash": "0" * 64, "num_layers": n_layers, "hidden_size": d},
        "prompt_template": "{question}", "token": "first", "max_new_tokens": None,
        "layers": list(range(n_layers)), "exit_layer": n_layers - 1, "hidden_size": d, "dtype": "float16",
        "shard_size": shard_size, "num_samples": n, "ids": [f"r{i}" for i in range(n)], "labels": labels,
        "skipped": [], "shards": shards, "complete": True,
    }
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest))


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def measure(directory: Path, chunk_layers: int, step: float) -> dict[str, float]:
    """Read once, score + sweep, read again; timings and peak RSS of this process."""
    from superneurons.activations.store import ActivationStore
    from superneurons.constants import METRICS
    from superneurons.scoring.neurons import probe_neurons
    from superneurons.selection import snt_sweep

    store = ActivationStore(directory)
    base_rss = _rss_mib()

    def read_once() -> float:
        t0 = time.perf_counter()
        for _ in store.iter_layer_chunks(chunk_layers):
            pass
        return time.perf_counter() - t0

    t_read_1 = read_once()
    t0 = time.perf_counter()
    probe = probe_neurons(store, None, 0.0, METRICS, chunk_layers=chunk_layers, keep_metric="accuracy",
                          keep_within=0.03, keep_step=step)
    t_score = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = snt_sweep(probe, metric="accuracy", step=step, depth=0.03)
    t_sweep = time.perf_counter() - t0
    t_read_2 = read_once()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"t_read_1": t_read_1, "t_read_2": t_read_2, "t_score": t_score, "t_sweep": t_sweep,
            "peak_rss_mib": peak, "base_rss_mib": base_rss, "pool": int(probe.pool_index.numel()),
            "best": float(probe.scores["accuracy"].max()), "candidates": len(rows),
            "threads": torch.get_num_threads(), "load": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--chunk-layers", type=int, default=4)
    ap.add_argument("--step", type=float, default=0.01, help="SNt sweep step (0.01 = 1 point).")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's).")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/sn-bench-store"))
    ap.add_argument("--keep", action="store_true", help="Keep the store folder afterwards.")
    ap.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure_only:  # child process: its peak RSS is the scoring's, not the writer's
        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(measure(args.dir, args.chunk_layers, args.step)))
        return

    fp16_mib = args.n * args.layers * args.hidden * 2 / 2**20
    print(f"store: N={args.n} L={args.layers} D={args.hidden} fp16 = {fp16_mib:.0f} MiB at {args.dir}")
    try:
        t0 = time.perf_counter()
        write_store(args.dir, args.n, args.layers, args.hidden)
        print(f"written in {time.perf_counter() - t0:.1f}s")
        cmd = [sys.executable, __file__, "--measure-only", "--dir", str(args.dir), "--chunk-layers",
               str(args.chunk_layers), "--step", str(args.step)] + (["--threads", str(args.threads)] if args.threads else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)
    t_read = min(r["t_read_1"], r["t_read_2"])
    work = r["t_score"] + r["t_sweep"]
    print(f"read the store once:          {r['t_read_1']:.2f}s, again {r['t_read_2']:.2f}s (using {t_read:.2f}s)")
    print(f"score_neurons (4 metrics):    {r['t_score']:.2f}s  (includes reading; best accuracy {r['best']:.4f}, "
          f"{r['pool']} neurons kept for the sweep)")
    print(f"SNt sweep ({100 * args.step:g}-point steps):".ljust(30) + f"{r['t_sweep']:.2f}s  ({r['candidates']} candidates)")
    print(f"ratio (score + sweep) / read: {work / t_read:.2f}x  (target <= 2x)")
    print(f"peak RSS of the measuring process: {r['peak_rss_mib']:.0f} MiB = {r['peak_rss_mib'] / fp16_mib:.2f}x "
          f"the fp16 tensor (target < 3x); {r['base_rss_mib']:.0f} MiB of it before reading (torch, store "
          f"manifest)")
    print(f"torch threads: {r['threads']}; load average during the run: {r['load']:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
