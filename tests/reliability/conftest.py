"""Helpers for the reliability suite: run the CLI as a user would (a fresh subprocess) and check that a
failure is a named error, not a traceback.

- `run_cli(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess` (text mode, offline env).
- `assert_named_error(res, *names)`: exit code 1 or 2, no "Traceback" in stderr or stdout, and every
  string in `names` (a file name, a record id, an option) in the output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1",
               TRANSFORMERS_VERBOSITY="error", OMP_NUM_THREADS="1", COLUMNS="200")
    return env


def run_cli(*args: str | Path, cwd: str | Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m superneurons ARGS` in a fresh process; never raises on a non-zero exit."""
    cmd = [sys.executable, "-m", "superneurons", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=cwd, timeout=timeout)


def assert_named_error(res: subprocess.CompletedProcess, *names: str) -> None:
    """The run failed cleanly: exit 1 or 2, no traceback, and each of `names` appears in its output."""
    out = res.stdout + res.stderr
    assert res.returncode in (1, 2), f"exit {res.returncode}:\n{out}"
    assert "Traceback" not in out, out
    for name in names:
        assert name in " ".join(out.split()), f"{name!r} not in:\n{out}"


@pytest.fixture(name="run_cli")
def _run_cli_fixture():
    return run_cli


@pytest.fixture(name="assert_named_error")
def _assert_named_error_fixture():
    return assert_named_error
