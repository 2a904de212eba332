"""One writer per output: a lock file held for a whole run, so two processes never write the same store
folder, classifier folder or predictions file.

The lock is `filelock`'s OS-level lock (released by the kernel when its process dies, even on SIGKILL),
so a held lock proves its writer is alive and a free one proves the last writer is gone: only a process
holding the lock may clean up temporary files it did not create. The holder's pid is written beside the
lock so the refusal can name it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from superneurons.errors import InUseError

LOCK_NAME = ".superneurons.lock"  #: the lock file inside a locked folder


def lock_path(target: str | Path, folder: bool) -> Path:
    """The lock file for `target`: inside it for a folder output, `.{name}.lock` beside it for a file."""
    target = Path(target)
    return target / LOCK_NAME if folder else target.with_name(f".{target.name}.lock")


def _holder(pid_file: Path) -> str:
    try:
        return f"pid {int(pid_file.read_text().strip())}"
    except (OSError, ValueError):
        return "another process"


@contextlib.contextmanager
def output_lock(target: str | Path, folder: bool = True, what: str = "output") -> Iterator[Path]:
    """Hold the lock of `target` (a folder, created if missing, or a file) for the `with` block.

    Raises InUseError naming the holder's pid when another live process holds it; never waits, since
    a second writer is a mistake to report, not a queue to join. The lock is per open file, so a second
    `output_lock` on the same target inside one process is refused too: take it once per run.
    """
    path = lock_path(target, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    pid_file = path.with_name(path.name + ".pid")
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise InUseError(f"{what} {str(target)!r} is in use by {_holder(pid_file)} (lock file {path}); wait for "
                         "that run to finish or stop it, or write to another location") from None
    try:
        pid_file.write_text(f"{os.getpid()}\n")
        yield path
    finally:
        with contextlib.suppress(OSError):
            pid_file.unlink()
        lock.release()
