"""One progress display for every long step: a rich bar on stderr, or nothing.

    >>> with progress("probe", total=len(samples), enabled=True) as advance:   # doctest: +SKIP
    ...     for batch in batches:
    ...         advance(len(batch))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress(description: str, total: int, enabled: bool = True, completed: int = 0,
             transient: bool = True) -> Iterator[Callable[[int], None]]:
    """Yield `advance(k)`, which moves a bar of `total` steps by k; a no-op when not `enabled`."""
    if not enabled:
        yield lambda k: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=transient)
    with bar:
        task = bar.add_task(description, total=total, completed=completed)
        yield lambda k: bar.advance(task, k)
