"""What the activation store's checks cost against `select` on the scoring benchmark's store.

Builds the store of `benchmarks/scoring_scale.py` (random fp16, default N=3000 x L=32 x D=4096,
786 MB, shards of 256, with content digests and per-layer checksums), then in interleaved rounds
(A B A B ...) times (wall and CPU) what `superneurons select` does (`fit_classifier` with its defaults: scoring,
the near-best pool, the SNt sweep) on the store opened with checks (`ActivationStore(dir)`) and
on a store never verified (every byte hashed), again on the unchanged store (its `.checked.json`
records what was verified, so only headers are compared), and with the checksums skipped
(`verify=False`), with the time spent inside the checks themselves (every shard's header against the
manifest, the checksum of every layer read), wall and CPU (exact with torch on one thread, the
default). Target (issue 16): the checks cost < 5% of `select`.

    python benchmarks/store_checks.py [--n 3000 --layers 32 --hidden 4096] [--rounds 3] [--threads 1] [--small]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scoring_scale import balanced_labels, random_acts, write_store  # noqa: E402


def timed_checks() -> dict[str, float]:
    """Wrap the store's two checks (header vs manifest, layer checksums) so their time inside `select` adds up."""
    from superneurons.activations import store as st

    spent = {"seconds": 0.0, "cpu": 0.0, "calls": 0}

    def wrap(fn):
        def timed(*a, **k):
            t0, c0 = time.perf_counter(), time.thread_time()  # the calling thread's CPU (torch on 1 thread)
            try:
                return fn(*a, **k)
            finally:
                spent["seconds"] += time.perf_counter() - t0
                spent["cpu"] += time.thread_time() - c0
                spent["calls"] += 1
        return timed

    st.verify_layers = wrap(st.verify_layers)
    st.ActivationStore._check_header = wrap(st.ActivationStore._check_header)
    return spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/sn-bench-checks"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the checks' CPU time is exact)")
    ap.add_argument("--small", action="store_true", help="A tiny run (N=240, 4 x 128) that checks the script.")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.small:
        args.n, args.layers, args.hidden, args.rounds = 240, 4, 128, 1
    from superneurons.activations.identity import CHECKED_NAME
    from superneurons.activations.store import ActivationStore
    from superneurons.inference.classifier import fit_classifier

    print(f"N={args.n} L={args.layers} D={args.hidden} fp16 = {args.n * args.layers * args.hidden * 2 / 2**20:.0f} MiB; "
          f"torch threads {torch.get_num_threads()}; load before {os.getloadavg()}")
    try:
        write_store(args.dir, random_acts(args.n, args.layers, args.hidden, seed=1), balanced_labels(args.n, seed=1))
        fit_classifier(ActivationStore(args.dir, verify=False))  # warm the page cache and torch
        time.sleep(2.1)  # the shards are settled: what is verified is recorded (`CheckedFiles`)
        spent = timed_checks()
        cases = {"first": "with checks, first read (every byte hashed)", "again": "with checks, files unchanged",
                 "off": "checksums skipped (verify=False)"}
        wall: dict[str, list[float]] = {k: [] for k in cases}
        cpu: dict[str, list[float]] = {k: [] for k in cases}
        inside: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
        for _ in range(args.rounds):
            for name in cases:
                if name == "first":
                    (args.dir / CHECKED_NAME).unlink(missing_ok=True)
                before = dict(spent)
                t0, c0 = time.perf_counter(), time.process_time()
                fit_classifier(ActivationStore(args.dir, verify=name != "off"))
                wall[name].append(round(time.perf_counter() - t0, 3))
                cpu[name].append(round(time.process_time() - c0, 3))
                inside[name].append((spent["seconds"] - before["seconds"], spent["cpu"] - before["cpu"]))
    finally:
        shutil.rmtree(args.dir, ignore_errors=True)
    med = statistics.median
    for name, what in cases.items():
        share_cpu = med(c / (t - c) for (_, c), t in zip(inside[name], cpu[name], strict=True))
        share_wall = med(w / (t - w) for (w, _), t in zip(inside[name], wall[name], strict=True))
        print(f"select {what:46s} wall median {med(wall[name]):6.2f}s {wall[name]}, CPU median "
              f"{med(cpu[name]):6.2f}s {cpu[name]}; inside the checks: CPU {med(c for _, c in inside[name]):.3f}s = "
              f"{100 * share_cpu:.1f}% of the rest of select (wall {100 * share_wall:.1f}%)")
    if torch.get_num_threads() != 1:
        print("(the checks' CPU time is exact only with --threads 1)")
    print(f"load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
