"""Distributed extraction helpers: a `probe` split over the processes of a `torchrun` / `accelerate launch` job.

This module knows ranks (who am I, which slice, gather, merge); the probe driver
(`superneurons.activations.probing.probe_distributed`) uses it. Nothing here launches processes: run the usual command under the usual launcher,

    torchrun --standalone --nproc_per_node 8 -m superneurons probe --model M --data D.jsonl --out acts/
    accelerate launch --num_processes 8 -m superneurons probe ...

and every process (rank) finds its place from `torch.distributed` or the launcher's environment
(RANK, WORLD_SIZE, LOCAL_RANK). Then:

1. every rank takes the same deterministic, contiguous slice of the samples (`rank_slice`: the
   first N % K ranks get one extra sample), so rank order is sample order;
2. rank r writes an ordinary resumable store of its slice into `out/rank-0000r/`
   (`superneurons.activations.probing`), on its own device (`cuda:LOCAL_RANK` for `--device auto|cuda`);
3. after all ranks finished (a gloo collective that also carries each rank's success or error),
   rank 0 writes `out/manifest.json`: the merged manifest listing every rank's shards with
   global sample ranges, so `ActivationStore(out)` reads the job's result exactly like a
   single-process store (same ids, labels and order).

`--out` must be on a filesystem every rank can read (rank 0 reads the rank manifests to merge;
on several nodes use shared storage). A killed job leaves whole shards in each rank folder; the same command resumes every rank
after its last whole shard. A store written with K processes is resumed only with K processes,
and a single-process store is never mixed with a distributed one (StoreError with the fix).

    >>> info = init_distributed()                                # doctest: +SKIP
    >>> lo, hi = rank_slice(len(samples), info.rank, info.world_size)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from superneurons.activations.store import FORMAT_VERSION, read_manifest, same_field
from superneurons.constants import MANIFEST_NAME, RANK_DIR, __version__
from superneurons.data.question_format import QuestionFormat
from superneurons.errors import StoreError
from superneurons.utils.files import read_json, write_json

if TYPE_CHECKING:
    from superneurons.models.base import VLM

#: Manifest fields every rank's store must agree on before they are merged.
_SHARED = ("format_version", "fingerprint", "prompt_template", "token", "max_new_tokens", "layers",
           "exit_layer", "hidden_size", "dtype", "shard_size", "model", "family")
_TIMEOUT = timedelta(hours=2)  # a rank may wait this long for the slowest one
_owns_group = False


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job: `rank` of `world_size`, `local_rank` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise StoreError(f"environment variable {name}={raw!r} is not an integer; launch with torchrun or "
                         "accelerate launch, which set RANK, WORLD_SIZE and LOCAL_RANK") from None


def dist_info() -> DistInfo:
    """Rank and world size from an initialized `torch.distributed` group, else from the launcher's env."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank()
        return DistInfo(rank, dist.get_world_size(), _env_int("LOCAL_RANK", rank))
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise StoreError(f"RANK={rank} / WORLD_SIZE={world} is not a valid process layout; launch with "
                         "torchrun --nproc_per_node K or accelerate launch")
    return DistInfo(rank, world, _env_int("LOCAL_RANK", rank))


def init_distributed(backend: str = "gloo") -> DistInfo:
    """Join the launcher's process group (gloo: only small Python objects are exchanged) if needed.

    A no-op in a single process or when the group already exists (e.g. made by accelerate).
    """
    import torch.distributed as dist

    global _owns_group
    info = dist_info()
    if info.distributed and not dist.is_initialized():
        if not dist.is_available():
            raise StoreError("this torch build has no torch.distributed; run a single process")
        for var in ("MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise StoreError(f"WORLD_SIZE={info.world_size} but {var} is not set; launch with torchrun "
                                 "or accelerate launch, which set it")
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size, timeout=_TIMEOUT)
        _owns_group = True
    return info


def shutdown_distributed() -> None:
    """Destroy the process group if `init_distributed` created it."""
    import torch.distributed as dist

    global _owns_group
    if _owns_group and dist.is_initialized():
        dist.destroy_process_group()
    _owns_group = False


def rank_device(device: str, info: DistInfo | None = None) -> str:
    """The device a rank should use: `cuda:LOCAL_RANK` for "auto"/"cuda" in a multi-GPU job, else `device`."""
    import torch

    info = info or dist_info()
    if info.distributed and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{info.local_rank % torch.cuda.device_count()}"
    return device


def rank_slice(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of rank `rank`'s contiguous share of `n` items; sizes differ by at most one."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def all_gather(obj: Any, info: DistInfo) -> list[Any]:
    import torch.distributed as dist

    if not info.distributed:
        return [obj]
    if not dist.is_initialized():
        raise StoreError("the process group is not initialized; call superneurons.activations.distributed.init_distributed() "
                         "first (the CLI does) or run a single process")
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def check_top(out: Path, world_size: int) -> None:
    """Refuse to run a `world_size`-process probe into a folder written by another number of processes."""
    path = out / MANIFEST_NAME
    if not path.is_file():
        if any(out.glob("shard-*.safetensors")):
            raise StoreError(f"{out} holds single-process shard files; a distributed probe cannot resume it: "
                             "choose another --out or run without torchrun")
        return
    top = read_json(path, StoreError, "delete the folder or choose another --out")
    was = top.get("world_size")
    if was is None:
        raise StoreError(f"{out} holds a single-process store; resume it without torchrun, or choose another "
                         "--out for a distributed probe")
    if was != world_size:
        raise StoreError(f"{out} was written by {was} processes, this job has {world_size}; resume with "
                         f"--nproc_per_node {was} (the sample slices depend on it) or choose another --out")


def write_placeholder(out: Path, vlm: VLM, n: int, world_size: int, dtype: str) -> None:
    """An incomplete top manifest marking `out` as a distributed store while the ranks work."""
    path = out / MANIFEST_NAME
    created = time.strftime("%Y-%m-%dT%H:%M:%S")
    if path.is_file():
        created = json.loads(path.read_text(encoding="utf-8")).get("created", created)
    write_json(path, {
        "format_version": FORMAT_VERSION, "library_version": __version__, "model": vlm.name_or_path,
        "family": vlm.family, "fingerprint": vlm.fingerprint, "prompt_template": vlm.prompt_template,
        "layers": [], "hidden_size": vlm.hidden_size, "dtype": dtype, "num_samples": 0, "ids": [], "labels": [],
        "skipped": [], "shards": [], "complete": False, "world_size": world_size,
        "ranks": [{"rank": r, "dir": RANK_DIR.format(r), "inputs": list(rank_slice(n, r, world_size))}
                  for r in range(world_size)],
        "note": "distributed probe in progress; run the same command again to resume it", "created": created})


def merge_rank_stores(out_dir: str | Path, world_size: int, num_inputs: int) -> dict[str, Any]:
    """Write `out_dir/manifest.json` merging the rank stores `rank-0000r/`; return the manifest.

    `num_inputs` is the number of samples the job was given (it fixes each rank's slice). Shard
    entries point into the rank folders with global sample ranges, in rank order.
    """
    out = Path(out_dir)
    merged: dict[str, Any] | None = None
    ids: list[str] = []
    labels: list[str | None] = []
    skipped: list[dict[str, str]] = []
    shards: list[dict[str, Any]] = []
    ranks: list[dict[str, Any]] = []
    formats: list[QuestionFormat] = []
    digests: list[str] | None = []
    complete = True
    for r in range(world_size):
        lo, hi = rank_slice(num_inputs, r, world_size)
        sub = out / RANK_DIR.format(r)
        entry = {"rank": r, "dir": sub.name, "inputs": [lo, hi], "start": len(ids), "num_samples": 0}
        if hi == lo:
            ranks.append(entry)
            continue
        if not (sub / MANIFEST_NAME).is_file():
            complete = False
            ranks.append(entry)
            continue
        m = read_manifest(sub)
        if (fmt := QuestionFormat.from_dict(m.get("question_format"))) is not None:
            formats.append(fmt)
        if m.get("num_samples", 0) + len(m.get("skipped", [])) != hi - lo:
            raise StoreError(f"{sub} holds {m.get('num_samples')} samples (+{len(m.get('skipped', []))} skipped) "
                             f"but rank {r}'s slice has {hi - lo}; it belongs to another job: choose another --out")
        if merged is None:
            merged = {k: v for k, v in m.items()
                      if k not in ("shards", "ids", "labels", "sample_digests", "skipped", "num_samples")}
        else:
            for key in _SHARED:
                if not same_field(key, m.get(key), merged.get(key)):
                    raise StoreError(f"rank stores disagree on {key!r} ({RANK_DIR.format(0)}.. vs {sub.name}); "
                                     "all ranks must run the same command: delete the folder and probe again")
        offset = len(ids)
        for s in sorted(m["shards"], key=lambda d: d["start"]):
            shards.append({**s, "file": f"{sub.name}/{s['file']}", "start": offset + s["start"],
                           "stop": offset + s["stop"], "local_start": s["start"], "rank": r})
        if digests is not None and m.get("sample_digests") is not None:
            digests.extend(m["sample_digests"])
        else:
            digests = None  # a rank store without content digests: the merged store has none either
        ids.extend(m["ids"])
        labels.extend(m["labels"])
        skipped.extend(m.get("skipped", []))
        complete = complete and bool(m.get("complete"))
        entry["num_samples"] = len(m["ids"])
        ranks.append(entry)
    if merged is None:
        raise StoreError(f"{out}: no rank wrote a store; run the probe again")
    top = out / MANIFEST_NAME
    if top.is_file():
        merged["created"] = json.loads(top.read_text(encoding="utf-8")).get("created", merged.get("created"))
    if formats:  # the questions of all ranks, not rank 0's slice only
        merged["question_format"] = QuestionFormat.merge(formats).to_dict()
    merged.update({"num_samples": len(ids), "ids": ids, "labels": labels, "sample_digests": digests,
                   "skipped": skipped, "shards": shards, "complete": complete, "world_size": world_size, "ranks": ranks,
                   "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
    write_json(top, merged)
    return merged
