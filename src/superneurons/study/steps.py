"""The study's bookkeeping: finished steps cached as JSON keyed by their inputs, a journal, the progress bars.

`StepCache(root)` keeps one JSON file per finished step under `root` (`<dataset>/<step>-<key>.json`);
`run(name, key, fn)` returns the cached value when a step with the same key finished before, else
calls `fn()`, writes its value atomically and returns it. A killed study therefore resumes at the
first unfinished step, and a changed input (model fingerprint, samples, options) changes the key of
exactly the steps that depend on it. Every call is appended to `journal.jsonl` (step, key, whether
it ran or came from the cache, seconds), so a rerun can be audited.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from superneurons.utils.files import write_json
from superneurons.utils.progress import shared_display

JOURNAL = "journal.jsonl"


def step_key(*parts: Any) -> str:
    """A short content hash of JSON-able `parts` (what a step's result depends on)."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class StepCache:
    """Finished steps as JSON under `root`, with a journal of every step run or reused."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.ran: list[str] = []
        self.reused: list[str] = []

    def path(self, name: str, key: str) -> Path:
        return self.root / f"{name}-{key}.json"

    def run(self, name: str, key: str, fn: Callable[[], Any]) -> Any:
        """`fn()`'s value, computed once per (name, key)."""
        p = self.path(name, key)
        t0 = time.perf_counter()
        if p.is_file():
            value = json.loads(p.read_text(encoding="utf-8"))["value"]
            self._log(name, key, cached=True, seconds=time.perf_counter() - t0)
            self.reused.append(name)
            return value
        value = fn()
        seconds = time.perf_counter() - t0
        p.parent.mkdir(parents=True, exist_ok=True)
        write_json(p, {"step": name, "key": key, "seconds": round(seconds, 3), "value": value})
        self._log(name, key, cached=False, seconds=seconds)
        self.ran.append(name)
        return value

    def _log(self, name: str, key: str, cached: bool, seconds: float) -> None:
        with (self.root / JOURNAL).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": name, "key": key, "cached": cached, "seconds": round(seconds, 3),
                                 "time": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")


class Steps:
    """One overall bar for the study (the current step as its text) and the wall time of every step;
    the bars of the step's own work (`utils.progress`) appear below it."""

    def __init__(self, total: int, enabled: bool, label: str = "study") -> None:
        self.times: dict[str, float] = {}
        self.total = total
        self.enabled = enabled
        self.label = label
        self.bar: Any = None
        self._display: Any = None

    def __enter__(self) -> Steps:
        self._display = shared_display(self.enabled)
        self.bar = self._display.__enter__()
        if self.bar is not None:
            self.task = self.bar.add_task(f"[bold]{self.label}[/]", total=self.total)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._display.__exit__(*exc)

    @contextmanager
    def step(self, key: str, text: str) -> Iterator[None]:
        if self.bar is not None:
            self.bar.update(self.task, description=f"[bold]{self.label}[/] {text}")
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.times[key] = round(time.perf_counter() - t0, 3)
            if self.bar is not None:
                self.bar.advance(self.task)
