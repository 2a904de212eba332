"""One writer per output: the lock refuses a second live writer and is free again after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from superneurons.errors import InUseError
from superneurons.utils.locking import lock_path, output_lock

_HOLD = """
import sys, time
from superneurons.utils.locking import output_lock
with output_lock(sys.argv[1], folder=sys.argv[2] == "1"):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(target, folder: bool) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(target), "1" if folder else "0"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("folder", [True, False])
def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path, folder):
    target = tmp_path / ("store" if folder else "preds.jsonl")
    proc = _holder(target, folder)
    try:
        with pytest.raises(InUseError, match=f"in use by pid {proc.pid}"), output_lock(target, folder=folder):
            pass
    finally:
        proc.kill()
        proc.wait()
    with output_lock(target, folder=folder) as path:  # the kernel released the killed holder's lock
        assert path == lock_path(target, folder)
        assert (path.parent / (path.name + ".pid")).read_text().strip() == str(os.getpid())
    assert not (path.parent / (path.name + ".pid")).exists()


def test_the_lock_is_free_after_a_sigkill_mid_run(tmp_path):
    proc = _holder(tmp_path / "clf", True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.05)
    with output_lock(tmp_path / "clf"):
        pass
