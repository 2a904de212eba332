"""Prediction files: `predict` into a JSONL written as it goes, resumable, one writer at a time.

`predict_to_file(clf, model, samples, out)` is what `superneurons predict` runs:

1. every sample is checked up front, before the model loads (text, and each image's header against
   `max_pixels`: `validate_samples`, no pixel decoded); with `skip_bad` a bad one is skipped and
   reported, else the first one stops the run with its name;
2. the output's lock (`output_lock(out, folder=False)`) is held for the whole run;
3. rows already in `out` (a rerun of the same command after a kill or a failure) are kept when the
   run record `out.run.json` shows the same classifier, model and settings and the row's sample is
   unchanged (id, question, image path, label, image size and mtime); rows of changed samples are
   recomputed. Another classifier, model or setting is a named error, never a mix. A partial last line
   (a kill mid-write) is dropped;
4. the remaining samples are predicted chunk by chunk (`superneurons.inference.answer.predict`), each
   chunk's rows appended and flushed, so a kill or a late failure loses at most one chunk;
5. at the end `out` holds one row per good sample in sample order, and the record says `complete`.

Under `torchrun` / `accelerate launch` every process runs the same call: rank r predicts its
contiguous slice (`rank_slice`) into `out.rank-0000r`, and rank 0 merges the parts in order into `out`.

    >>> run = predict_to_file(clf, lambda: clf.load_model(), load_samples("d.jsonl"), "preds.jsonl")  # doctest: +SKIP
    >>> run.predicted, run.resumed, run.skipped                                                      # doctest: +SKIP
    (90, 10, [])
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from superneurons.activations import distributed as dist
from superneurons.config import InferConfig, configure
from superneurons.constants import RANK_DIR
from superneurons.data.samples import validate_samples
from superneurons.errors import DataError
from superneurons.inference.answer import predict
from superneurons.inference.classifier import prediction_rows
from superneurons.utils.files import atomic_write_bytes, json_text, read_json, write_json
from superneurons.utils.locking import output_lock
from superneurons.utils.progress import progress as progress_bar

if TYPE_CHECKING:
    from superneurons.data.samples import Sample
    from superneurons.inference.classifier import SuperNeuronClassifier
    from superneurons.models.base import VLM

RUN_FORMAT = 1
CHUNK_BATCHES = 8  #: batches predicted between two appends: a kill loses at most this many
_FIX = "delete it (and its .run.json) to start over, or choose another --out"


@dataclass
class PredictionRun:
    """What `predict_to_file` did: `rows` (the file's rows, in sample order), how many were `predicted`
    now and `resumed` from an earlier run, the `skipped` (id, reason) pairs, and the prediction seconds."""

    path: Path
    rows: list[dict[str, Any]]
    predicted: int = 0
    resumed: int = 0
    recomputed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    vlm: VLM | None = None


def run_record_path(out: str | Path) -> Path:
    """The run record beside a predictions file: `preds.jsonl` -> `preds.jsonl.run.json`."""
    out = Path(out)
    return out.with_name(out.name + ".run.json")


def part_path(out: Path, rank: int) -> Path:
    """Rank `rank`'s part of a distributed prediction file."""
    return out.with_name(f"{out.name}.{RANK_DIR.format(rank)}")


def sample_digest(s: Sample) -> str:
    """A short digest of what a prediction depends on in `s`: id, question, label, image path, size, mtime."""
    image: Any = s.image
    if hasattr(image, "tobytes"):
        image = hashlib.sha256(image.tobytes()).hexdigest()
        stat: tuple[int, int] = (0, 0)
    else:
        try:
            st = os.stat(image)
            stat = (st.st_size, st.st_mtime_ns)
        except OSError:
            stat = (-1, -1)
    key = json.dumps([s.id, s.question, s.label, str(image), *stat], ensure_ascii=False)
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def classifier_digest(clf: SuperNeuronClassifier) -> str:
    """A digest of the classifier's neurons, thresholds, rules and settings (not its library version)."""
    cfg = {k: v for k, v in clf.to_config().items() if k != "library_version"}
    h = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode())
    for t in (clf.sns.layers, clf.sns.neurons, clf.sns.alpha, clf.sns.rule):
        h.update(t.detach().cpu().double().numpy().tobytes())
    return h.hexdigest()[:16]


def model_digest(vlm: VLM) -> str:
    """A digest of the model's fingerprint (architecture, config, weights sample)."""
    return hashlib.sha256(json.dumps(vlm.fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _settings(clf: SuperNeuronClassifier, cfg: InferConfig) -> dict[str, Any]:
    return {"classifier": classifier_digest(clf), "aggregation": cfg.aggregation or clf.aggregation,
            "cascade_margin": cfg.cascade_margin}


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a predictions file; a partial last line (a kill mid-write) is cut off the file."""
    if not path.is_file():
        return []
    raw = path.read_bytes()
    end = raw.rfind(b"\n") + 1
    if end < len(raw):
        with path.open("r+b") as fh:
            fh.truncate(end)
    rows = []
    for lineno, line in enumerate(raw[:end].splitlines(), start=1):
        try:
            rows.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path} line {lineno} is not a JSON prediction row ({exc}); {_FIX}") from None
        if not isinstance(rows[-1], dict) or "id" not in rows[-1]:
            raise DataError(f"{path} line {lineno} is not a prediction row (no id); {_FIX}")
    return rows


def _write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    atomic_write_bytes(path, "".join(json_text(r, None) + "\n" for r in rows).encode("utf-8"))


def _resume(out: Path, record: dict[str, Any], good: Sequence[Sample]) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of `out` to keep (sample unchanged, still in the input) and the ids recomputed; a run
    record of another classifier, model or setting is a DataError. Fills `record["model"]` from the
    earlier run when this one has not loaded a model (yet)."""
    old = run_record_path(out)
    if not old.is_file():  # never read (or cut) a file this library did not write
        if out.exists():
            raise DataError(f"{out} exists but has no run record {old.name}: it was not written by a resumable "
                            f"`predict`; {_FIX}")
        return [], []
    prev = read_json(old, DataError, _FIX)
    if not isinstance(prev, dict) or prev.get("format") != RUN_FORMAT:
        raise DataError(f"{old} is not a run record of this library; {_FIX}")
    if record.get("model") is None:
        record["model"] = prev.get("model")
    for key, what in (("classifier", "another classifier"), ("aggregation", "another aggregation"),
                      ("cascade_margin", "another cascade margin"), ("model", "another model")):
        a, b = prev.get(key), record.get(key)
        if a != b and not (key == "model" and None in (a, b)):  # the model is known once it is loaded
            raise DataError(f"{out} holds predictions made with {what} ({key} {a!r}, this run {b!r}); mixing "
                            f"them would be wrong: {_FIX}")
    rows = _read_rows(out)
    digests = prev.get("samples", {})
    wanted = {s.id: record["samples"][s.id] for s in good}
    keep, changed, seen = [], [], set()
    for r in rows:
        sid = str(r["id"])
        if sid in seen:
            raise DataError(f"{out} lists sample {sid!r} twice; {_FIX}")
        seen.add(sid)
        if sid in wanted and digests.get(sid) == wanted[sid]:
            keep.append(r)
        else:
            changed.append(sid)
    if changed:  # drop the rows of changed or removed samples before appending
        _write_rows(out, keep)
    return keep, [sid for sid in changed if sid in wanted]


def _bad_in_chunk(chunk: Sequence[Sample], max_pixels: int | None) -> list[tuple[str, str]]:
    """The samples of a failed chunk whose image does not decode (the slow path, only after a failure)."""
    bad = []
    for s in chunk:
        try:
            s.load_image(max_pixels)
        except DataError as exc:
            bad.append((s.id, str(exc)))
    return bad


def _predict_local(clf: SuperNeuronClassifier, model: VLM | Callable[[], VLM], samples: Sequence[Sample], out: Path,
                   cfg: InferConfig, progress: bool, on_chunk: Callable[[int], None] | None) -> PredictionRun:
    good, skipped = validate_samples(samples, skip_bad=cfg.skip_bad, max_pixels=cfg.max_pixels)
    record: dict[str, Any] = {"format": RUN_FORMAT, **_settings(clf, cfg), "model": None, "complete": False,
                              "samples": {s.id: sample_digest(s) for s in samples}}
    with output_lock(out, folder=False, what="predictions file"):
        out.parent.mkdir(parents=True, exist_ok=True)
        keep, recomputed = _resume(out, record, good)
        done = {str(r["id"]) for r in keep}
        todo = [s for s in good if s.id not in done]
        run = PredictionRun(out, keep, resumed=len(keep), recomputed=recomputed, skipped=list(skipped))
        if todo:
            run.vlm = model if hasattr(model, "prepare") else model()  # a VLM, or a function loading one
            record["model"] = model_digest(run.vlm)
            _resume(out, record, good)  # the model must match the one of the kept rows
        write_json(run_record_path(out), {**record, "skipped": [list(x) for x in run.skipped]})
        chunk_size = cfg.batch_size * CHUNK_BATCHES
        t0 = time.perf_counter()
        with progress_bar("predict", len(good), enabled=progress and bool(todo), completed=len(keep),
                          transient=False) as advance, out.open("a", encoding="utf-8") as fh:
            for lo in range(0, len(todo), chunk_size):
                chunk = todo[lo:lo + chunk_size]
                try:
                    output = predict(clf, run.vlm, chunk, cfg)
                except DataError:
                    bad = _bad_in_chunk(chunk, cfg.max_pixels) if cfg.skip_bad else []
                    if not bad:
                        raise
                    run.skipped.extend(bad)
                    chunk = [s for s in chunk if s.id not in {sid for sid, _ in bad}]
                    output = predict(clf, run.vlm, chunk, cfg) if chunk else None
                if output is not None:
                    rows = prediction_rows(chunk, output)
                    fh.write("".join(json_text(r, None) + "\n" for r in rows))
                    fh.flush()
                    os.fsync(fh.fileno())
                    run.rows.extend(rows)
                    run.predicted += len(rows)
                advance(len(chunk))
                if on_chunk is not None:
                    on_chunk(run.predicted)
        run.seconds = time.perf_counter() - t0
        order = {s.id: i for i, s in enumerate(good)}
        ordered = sorted(run.rows, key=lambda r: order[str(r["id"])])
        if ordered != run.rows:  # a resume appended rows of samples that came earlier
            _write_rows(out, ordered)
        run.rows = ordered
        write_json(run_record_path(out), {**record, "complete": True, "skipped": [list(x) for x in run.skipped]})
    return run


def predict_to_file(clf: SuperNeuronClassifier, model: VLM | Callable[[], VLM], samples: Sequence[Sample],
                    out: str | Path, config: InferConfig | None = None, *, progress: bool = False,
                    on_chunk: Callable[[int], None] | None = None, **options: Any) -> PredictionRun:
    """Predict `samples` into the JSONL `out`, resumably (see the module doc); return what was done.

    `model` is the VLM, or a function that loads it: called only when there is something to predict,
    after the samples were checked. Settings: `config` and/or `InferConfig` fields as keywords
    (`batch_size`, `aggregation`, `cascade_margin`, `strict`, `skip_bad`, `max_pixels`).
    `on_chunk(rows_so_far)` is called after each appended chunk.
    """
    cfg = configure(InferConfig, config, options)
    out = Path(out)
    if not samples:
        raise DataError("predict got no samples; pass at least one Sample")
    info = dist.dist_info()
    if not info.distributed:
        parts = sorted(out.parent.glob(f"{out.name}.rank-*")) if out.parent.is_dir() else []
        if parts:
            raise DataError(f"{out} is the output of an unfinished torchrun job ({parts[0].name}, ...); resume it "
                            "with the same torchrun command, or delete the part files to start over")
        return _predict_local(clf, model, samples, out, cfg, progress, on_chunk)
    return _predict_distributed(clf, model, samples, out, cfg, info, progress, on_chunk)


def _finished(out: Path, clf: SuperNeuronClassifier, cfg: InferConfig,
              samples: Sequence[Sample]) -> list[dict[str, Any]] | None:
    """The rows of `out` when its run record shows this very run (settings and samples) complete, else None."""
    path = run_record_path(out)
    prev = read_json(path, DataError, _FIX) if path.is_file() else {}
    same = all(prev.get(k) == v for k, v in _settings(clf, cfg).items())
    if not (same and prev.get("complete") and prev.get("samples") == {s.id: sample_digest(s) for s in samples}):
        return None
    return _read_rows(out)


def _predict_distributed(clf: SuperNeuronClassifier, model: VLM | Callable[[], VLM], samples: Sequence[Sample],
                         out: Path, cfg: InferConfig, info: dist.DistInfo, progress: bool,
                         on_chunk: Callable[[int], None] | None) -> PredictionRun:
    """Each rank its slice into a part file; rank 0 merges the parts, in rank (= sample) order, into `out`."""
    if out.exists() or run_record_path(out).exists():
        done = _finished(out, clf, cfg, samples)
        if done is None:
            raise DataError(f"{out} already exists and is not this job's finished output; a torchrun job writes "
                            f"a new file: {_FIX} (or rerun without torchrun to resume it)")
        return PredictionRun(out, done, resumed=len(done))
    part = dist.run_rank_slice(lambda lo, hi: _predict_local(clf, model, samples[lo:hi], part_path(out, info.rank),
                                                             cfg, progress and info.is_main, on_chunk),
                               len(samples), info, DataError, "the rows written so far are kept")
    reports = dist.all_gather(None if part is None else (part.predicted, part.resumed, part.skipped), info)
    run = PredictionRun(out, [], vlm=None if part is None else part.vlm)
    for rep in reports:
        if rep is not None:
            run.predicted += rep[0]
            run.resumed += rep[1]
            run.skipped.extend(tuple(x) for x in rep[2])
    if info.is_main:
        with output_lock(out, folder=False, what="predictions file"):
            record = {"format": RUN_FORMAT, **_settings(clf, cfg), "complete": True, "samples": {},
                      "skipped": [list(x) for x in run.skipped], "world_size": info.world_size}
            for r in range(info.world_size):
                path = part_path(out, r)
                if path.is_file():
                    run.rows.extend(_read_rows(path))
                    sub = read_json(run_record_path(path), DataError, _FIX)
                    record["samples"].update(sub.get("samples", {}))
                    record["model"] = sub.get("model") or record.get("model")
            _write_rows(out, run.rows)
            write_json(run_record_path(out), record)
            for r in range(info.world_size):
                part_path(out, r).unlink(missing_ok=True)
                run_record_path(part_path(out, r)).unlink(missing_ok=True)
    dist.all_gather(None, info)  # the others return once the merged file exists
    if not info.is_main:
        run.rows = _read_rows(out)
    return run
