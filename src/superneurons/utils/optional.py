"""Optional dependencies: a clear error naming the pip extra when one is missing."""

from __future__ import annotations

from typing import Any

from superneurons.constants import REPORT_EXTRA
from superneurons.errors import SuperNeuronsError


def require_matplotlib(what: str = "the report's plots", hint: str = "") -> Any:
    """matplotlib's `Figure` class (figures are drawn without pyplot), or a SuperNeuronsError naming the
    pip extra that installs it; `hint` is appended (e.g. how to skip the plot)."""
    try:
        import matplotlib  # noqa: F401  (checked first: a cached submodule would hide a missing package)
        from matplotlib.figure import Figure
    except ImportError:
        raise SuperNeuronsError(f"{what} need matplotlib: {REPORT_EXTRA}{hint}") from None
    return Figure
