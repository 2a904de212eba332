"""One progress display for every long step: a rich bar on stderr, or nothing.

Inside `shared_display()` (a driver of several steps, e.g. `superneurons study`) every `progress`
bar joins the driver's display below its overall bar instead of opening a second live display.

    >>> with progress("probe", total=len(samples), enabled=True) as advance:   # doctest: +SKIP
    ...     for batch in batches:
    ...         advance(len(batch))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_SHARED: list[Any] = []


@contextmanager
def progress(description: str, total: int, enabled: bool = True, completed: int = 0,
             transient: bool = True) -> Iterator[Callable[[int], None]]:
    """Yield `advance(k)`, which moves a bar of `total` steps by k; a no-op when not `enabled`."""
    if not enabled:
        yield lambda k: None
        return
    if _SHARED:
        shared = _SHARED[-1]
        task = shared.add_task(description, total=total, completed=completed)
        try:
            yield lambda k: shared.advance(task, k)
        finally:
            shared.remove_task(task)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=transient)
    with bar:
        task = bar.add_task(description, total=total, completed=completed)
        yield lambda k: bar.advance(task, k)


@contextmanager
def shared_display(enabled: bool = True) -> Iterator[Any]:
    """A rich `Progress` on stderr that the `progress` bars opened inside join; None when not `enabled`."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True))
    _SHARED.append(bar)
    try:
        with bar:
            yield bar
    finally:
        _SHARED.remove(bar)
