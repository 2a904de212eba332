"""benchmarks/scoring_scale.py runs end to end in its small mode and prints every row the lead reads."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scoring_scale.py"


def test_small_benchmark_prints_the_before_after_table(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--small", "--rounds", "1", "--dir", str(tmp_path / "store")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for row in ("pure read of the same bytes", "today's scorer", "new score_neurons", "new alpha_sweep (32 alphas)",
                "store read from page cache", "load average", "int16 bits -> int16 0/1 (new)"):
        assert row in out, row
    assert out.count("x read (median)") == 2  # in memory and from the store
    assert "new counts equal today's exactly (every metric, in memory and from the store): yes" in out
    assert not (tmp_path / "store").exists()  # removed unless --keep
