"""`prefetched(fn, items)`: fn(item) for each item, in order, the next one computed in a worker thread.

Input preparation (image decoding, the processor's resize and normalize, tokenizing) is CPU work
that does not depend on the forward. Run in one worker thread it overlaps with the forward of the
previous batch: torch releases the GIL inside its ops, PIL inside decode and resize, numpy inside
its array loops, the Rust tokenizers inside encoding. The values and their order are exactly those
of `map(fn, items)`; only the timing changes.

- One worker thread, at most `ahead` items prepared ahead: memory stays at `ahead` extra batches.
- An exception in the worker is raised in the caller, unchanged (same type, message, traceback
  frames of `fn`), at the position of the item that failed; later items are not prepared.
- Leaving early (`break`, an exception in the caller's loop, `close()`) cancels what is queued and
  joins the worker before returning: no thread is left behind.

    >>> list(prefetched(lambda x: x * x, range(4)))
    [0, 1, 4, 9]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import chain, islice
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
THREAD_PREFIX = "superneurons-prefetch"


def prefetched(fn: Callable[[T], R], items: Iterable[T], ahead: int = 1, enabled: bool = True) -> Iterator[R]:
    """Yield `fn(item)` for every item in order while the next `ahead` run in a worker thread.

    `enabled=False` (or a single item) is the plain serial loop, with no thread.
    """
    if ahead < 1:
        raise ValueError(f"ahead={ahead}; prefetch at least one item ahead")
    todo = iter(items)
    head = list(islice(todo, 2 if enabled else 0))
    if len(head) < 2:  # nothing to overlap with
        for item in chain(head, todo):
            yield fn(item)
        return
    todo = chain(head, todo)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_PREFIX)
    pending: deque[Future[R]] = deque(pool.submit(fn, item) for item in islice(todo, ahead))
    try:
        while pending:
            result = pending.popleft().result()  # a worker's exception is raised here, as it was
            pending.extend(pool.submit(fn, item) for item in islice(todo, 1))
            yield result
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
