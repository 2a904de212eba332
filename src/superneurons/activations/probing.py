"""The probe driver (Alg. 1 line 3): capture a sample list's activations into a resumable store.

`probe(vlm, samples, out_dir)` validates the samples' images up front, writes the manifest, then
captures shard after shard (`superneurons.activations.extract.capture_batches`), each written
atomically (`superneurons.activations.store`). Running it again with the same arguments resumes after
the last whole shard; a store of another model, template, token, layer set, dtype or sample list
in the same folder is refused.

Under `torchrun` / `accelerate launch` (WORLD_SIZE > 1) each process probes its contiguous slice
into `out/rank-0000r/` and rank 0 merges the manifests (`probe_distributed`, with the helpers of
`superneurons.activations.distributed`), so the result reads like a single-process store.

    >>> store = probe(vlm, load_samples("probe.jsonl"), "acts/", exit_layer=7)   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from superneurons.activations import distributed as dist
from superneurons.activations.extract import capture_batches
from superneurons.activations.identity import (
    CheckedFiles,
    changed_ids,
    id_list,
    identity_digest,
    sample_digests,
)
from superneurons.activations.prefill import model_layers
from superneurons.activations.store import (
    ACTIVATIONS_KEY,
    DTYPES,
    FORMAT_VERSION,
    ActivationStore,
    check_same_run,
    read_manifest,
    shard_info,
    verify_layers,
    write_shard,
)
from superneurons.config import CaptureConfig, configure
from superneurons.constants import MANIFEST_NAME, RANK_DIR, SHARD_PATTERN, __version__
from superneurons.data.question_format import QuestionFormat
from superneurons.data.samples import check_both_classes, validate_samples
from superneurons.errors import DataError, InUseError, StoreError
from superneurons.utils.files import write_json
from superneurons.utils.locking import output_lock
from superneurons.utils.progress import progress as progress_bar

if TYPE_CHECKING:
    from superneurons.data.samples import Sample
    from superneurons.models.base import VLM

OnShard = Callable[[int, Path], None]
Notify = Callable[[str], None]


def probe(vlm: VLM, samples: Sequence[Sample], out_dir: str | Path, config: CaptureConfig | None = None, *,
          progress: bool = True, on_shard: OnShard | None = None, rank_split: bool = True,
          notify: Notify | None = None, **options: Any) -> ActivationStore:
    """Capture activations of `samples` into a resumable store at `out_dir`; return it opened.

    Settings: `config` and/or `CaptureConfig` fields as keywords (`token`, `layers`, `exit_layer`,
    `batch_size`, `max_new_tokens`, `dtype` of the stored values, `shard_size`, `skip_bad`,
    `prefix_reuse`, `require_labels`). Images are validated up front: a bad one raises a DataError
    naming the sample, or with `skip_bad` is skipped and listed in the manifest's `skipped`.
    `on_shard(index, path)` is called after each shard is committed. Under a launcher with several
    processes and `rank_split`, each process probes its slice (`probe_distributed`).

    The folder is locked for the whole run (`superneurons.utils.locking.output_lock`): a second
    process probing into it gets an InUseError naming this one's pid. Resuming reuses a shard only
    when its samples' content (id, label, question, image bytes) is unchanged and its bytes match
    their checksums; changed samples are recomputed and named through `notify(message)` (default:
    a UserWarning), or refused with `refuse_changed=True`.
    """
    cfg = configure(CaptureConfig, config, options)
    if rank_split and dist.dist_info().distributed:
        return probe_distributed(vlm, samples, out_dir, cfg, progress=progress, on_shard=on_shard, notify=notify)
    return _probe_local(vlm, samples, Path(out_dir), cfg, progress, on_shard, notify)


def _probe_local(vlm: VLM, samples: Sequence[Sample], out: Path, cfg: CaptureConfig, progress: bool,
                 on_shard: OnShard | None, notify: Notify | None = None, lock: bool = True) -> ActivationStore:
    with output_lock(out, what="store folder") if lock else contextlib.nullcontext():
        return _probe_locked(vlm, samples, out, cfg, progress, on_shard, notify or _warn)


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=4)


def _probe_locked(vlm: VLM, samples: Sequence[Sample], out: Path, cfg: CaptureConfig, progress: bool,
                  on_shard: OnShard | None, notify: Notify) -> ActivationStore:
    try:
        chosen, stop = model_layers(vlm, cfg.layers, cfg.exit_layer)
    except ValueError as exc:
        raise StoreError(str(exc)) from exc
    good, skipped = validate_samples(samples, skip_bad=cfg.skip_bad, require_both_classes=cfg.require_labels,
                                     max_pixels=cfg.max_pixels)
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.glob(".*.tmp-*"):  # leftovers of a killed write (this process holds the folder's lock)
        tmp.unlink(missing_ok=True)

    n = len(good)
    digests = sample_digests(good)
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION, "library_version": __version__,
        "model": vlm.name_or_path, "model_revision": vlm.revision, "family": vlm.family,
        "fingerprint": vlm.fingerprint, "prompt_template": vlm.prompt_template,
        "question_format": QuestionFormat.from_questions([s.question for s in good]).to_dict(), "token": cfg.token,
        "max_new_tokens": cfg.max_new_tokens if cfg.token == "last" else None,
        "layers": chosen, "exit_layer": stop, "hidden_size": vlm.hidden_size, "dtype": cfg.dtype,
        "shard_size": cfg.shard_size, "num_samples": n,
        "ids": [s.id for s in good], "labels": [s.label for s in good], "sample_digests": digests,
        "skipped": [{"id": sid, "reason": why} for sid, why in skipped],
        "shards": [], "complete": False, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    path = out / MANIFEST_NAME
    if path.is_file():
        old = read_manifest(out)
        check_same_run(old, manifest, out)
        _check_content(old, manifest, out, cfg.refuse_changed, notify)
        manifest["created"] = old.get("created", manifest["created"])
    elif any(out.glob("shard-*.safetensors")):
        raise StoreError(f"{out} holds shard files but no {MANIFEST_NAME}; it is not a store this library "
                         "can resume: delete the folder or choose another --out")

    bounds = [(i, s, min(s + cfg.shard_size, n)) for i, s in enumerate(range(0, n, cfg.shard_size))]
    todo: list[tuple[int, int, int]] = []
    checked = CheckedFiles(out)
    for i, start, end in bounds:
        entry = _reusable(out / SHARD_PATTERN.format(i), start, end, [end - start, len(chosen), vlm.hidden_size],
                          identity_digest(digests[start:end]), notify, checked)
        if entry is not None:
            manifest["shards"].append(entry)
        else:
            todo.append((i, start, end))
    checked.save()
    manifest["complete"] = not todo
    write_json(path, manifest)

    done = n - sum(e - s for _, s, e in todo)
    with progress_bar(f"probe: {cfg.token} token, {len(chosen)} layers", n, enabled=progress and bool(todo),
                      completed=done, transient=False) as advance:
        for i, start, end in todo:
            parts = []
            for acts in capture_batches(vlm, good[start:end], cfg):
                parts.append(acts)
                advance(acts.shape[0])
            full = torch.cat(parts, dim=0)
            stored = full.to(DTYPES[cfg.dtype])
            if not bool(torch.isfinite(stored).all()) and bool(torch.isfinite(full).all()):
                raise StoreError(f"activations of samples {start}..{end - 1} overflow {cfg.dtype}; "
                                 "rerun with --dtype float32 into a new --out")
            shard = out / SHARD_PATTERN.format(i)
            manifest["shards"].append(write_shard(shard, stored, start, end, identity_digest(digests[start:end])))
            checked.mark(shard.name, shard, range(len(chosen)))  # its bytes are what was just hashed
            checked.save()
            manifest["shards"].sort(key=lambda d: d["start"])
            manifest["complete"] = len(manifest["shards"]) == len(bounds)
            manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            write_json(path, manifest)
            if on_shard is not None:
                on_shard(i, shard)
    return ActivationStore(out)


def _check_content(old: dict[str, Any], new: dict[str, Any], out: Path, refuse: bool, notify: Notify) -> None:
    """Compare the samples' content digests of a store being resumed with this run's; say what changed."""
    if old.get("sample_digests") is None:
        raise StoreError(f"{out} was written by an older superneurons that did not record the samples' content "
                         "(questions, image bytes), so resuming cannot tell whether they changed: probe into a new "
                         "--out (or delete this folder)")
    changed = changed_ids(new["ids"], old["sample_digests"], new["sample_digests"])
    if not changed:
        return
    what = (f"{len(changed)} sample(s) changed their question or image since {out} was written: "
            f"{id_list(changed)}")
    if refuse:
        raise StoreError(f"{what}. Run without --refuse-changed to recompute their shards, or probe into a new --out")
    notify(f"{what}; recomputing the shards that hold them")


def _reusable(file: Path, start: int, end: int, shape: list[int], identity: str, notify: Notify,
              checked: CheckedFiles) -> dict[str, Any] | None:
    """The manifest entry of an existing shard file that holds exactly these samples, intact; else None."""
    info = shard_info(file) if file.is_file() else None
    if info is None or (info.start, info.stop, info.shape) != (start, end, shape) or info.checksums is None:
        return None
    if info.identity != identity:
        return None  # other samples (or changed content): `_check_content` said so
    if not checked.verified(file.name, file, range(shape[1])):
        from safetensors import safe_open

        try:
            with safe_open(str(file), framework="pt") as f:
                verify_layers(file, f.get_tensor(ACTIVATIONS_KEY), 0, info.checksums)
        except StoreError:
            notify(f"{file.name} is damaged (its bytes do not match its checksums); recomputing it")
            return None
        checked.mark(file.name, file, range(shape[1]))
    return {"file": file.name, "start": start, "stop": end, "checksums": info.checksums, "identity": identity}


def probe_distributed(vlm: VLM, samples: Sequence[Sample], out_dir: str | Path, config: CaptureConfig | None = None,
                      *, info: dist.DistInfo | None = None, progress: bool = True, on_shard: OnShard | None = None,
                      notify: Notify | None = None, **options: Any) -> ActivationStore:
    """`probe` for one rank of a job; every rank returns the merged store.

    Every rank must be given the same `samples` and settings. Only rank 0 shows a progress bar. In a
    single process this is `probe`.
    """
    cfg = configure(CaptureConfig, config, options)
    info = info or dist.init_distributed()
    out = Path(out_dir)
    if not info.distributed:
        return _probe_local(vlm, samples, out, cfg, progress, on_shard, notify)
    if not samples:
        raise DataError("probe got no samples; pass at least one Sample")
    if cfg.require_labels:
        check_both_classes(samples)
    out.mkdir(parents=True, exist_ok=True)
    dist.check_top(out, info.world_size)
    with contextlib.ExitStack() as locks:  # rank 0 holds the job's folder, every rank its own folder
        refusal: str | None = None
        try:
            if info.is_main:
                locks.enter_context(output_lock(out, what="store folder"))
            locks.enter_context(output_lock(out / RANK_DIR.format(info.rank), what="rank store folder"))
        except InUseError as exc:
            refusal = f"rank {info.rank}: {exc}"
        refusals = [r for r in dist.all_gather(refusal, info) if r is not None]  # also: every rank checked the folder
        if refusals:
            raise InUseError("; ".join(refusals))
        return _probe_ranks(vlm, samples, out, cfg, info, progress, on_shard, notify)


def _probe_ranks(vlm: VLM, samples: Sequence[Sample], out: Path, cfg: CaptureConfig, info: dist.DistInfo,
                 progress: bool, on_shard: OnShard | None, notify: Notify | None) -> ActivationStore:
    if info.is_main:
        dist.write_placeholder(out, vlm, len(samples), info.world_size, cfg.dtype)
    rank_cfg = configure(CaptureConfig, cfg, {"require_labels": False})
    dist.run_rank_slice(lambda lo, hi: _probe_local(vlm, samples[lo:hi], out / RANK_DIR.format(info.rank), rank_cfg,
                                                    progress and info.is_main, on_shard, notify, lock=False),
                        len(samples), info, StoreError, "finished shards are kept")
    merge_error: str | None = None
    if info.is_main:
        try:
            dist.merge_rank_stores(out, info.world_size, len(samples))
        except Exception as exc:
            merge_error = f"{type(exc).__name__}: {exc}"
    merge_error = dist.all_gather(merge_error, info)[0]
    if merge_error is not None:
        raise StoreError(f"rank 0 could not merge the rank stores: {merge_error}")
    return ActivationStore(out)
