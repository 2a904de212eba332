"""Atomic file writes: a file is written to a temporary name beside it and moved into place with
`os.replace`, so a killed run leaves either the old file or the whole new one, never half of it."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

TMP_PATTERN = ".{name}.tmp-{pid}"  #: the temporary name a write goes through (`.{name}.tmp-{pid}`)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file and `os.replace`; return the path."""
    path = Path(path)
    tmp = path.with_name(TMP_PATTERN.format(name=path.name, pid=os.getpid()))
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def finite_json(obj: Any) -> Any:
    """`obj` with every NaN or infinite float replaced by None, so it serialises as valid JSON (null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def json_text(obj: Any, indent: int | None = 1, default: Callable[[Any], Any] | None = None) -> str:
    """`obj` as strict JSON text: NaN and Infinity (not JSON) become null. `default` as in `json.dumps`."""
    if default is not None:  # what `default` returns may hold non-finite floats too
        obj = json.loads(json.dumps(obj, default=default))
    return json.dumps(finite_json(obj), indent=indent, allow_nan=False)


def write_json(path: str | Path, obj: Any, indent: int | None = 1) -> Path:
    """`obj` as strict JSON (UTF-8, a final newline; NaN/Infinity written as null), written atomically."""
    return atomic_write_bytes(path, (json_text(obj, indent) + "\n").encode())


def read_json(path: str | Path, error: type[Exception], fix: str, prefix: str = "") -> Any:
    """The parsed JSON file at `path`; a damaged or undecodable one raises `error` naming the file, where
    it broke and `fix` (e.g. "probe again into a new folder")."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{prefix}{path} is not UTF-8 text (byte {exc.start}); {fix}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{prefix}{path} is not valid JSON ({exc.msg} at line {exc.lineno}); {fix}") from exc
