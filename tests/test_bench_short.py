"""The benchmark suite's short mode runs in CI: it checks counts and pattern sets, not times."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.mark.timeout(600)
@pytest.mark.skipif(not (SHARED / "bench" / "naive_enum.py").exists(), reason="../shared/bench is missing")
def test_run_bench_short_mode_agrees_with_yardstick(tmp_path):
    out = tmp_path / "bench.json"
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run_bench.py"), "--short", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    import json

    report = json.loads(out.read_text())
    assert len(report["nets"]) >= 5
    assert all(n["same_patterns"] for n in report["nets"])
    assert any(n["fast"]["regions"] == 930 for n in report["nets"])  # bench_d2_16x3 (yardstick: 930)
