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


def test_scaling_model_two_stage_static_partition():
    """The scaling model's static partition: two-stage, the replicated part is about P nodes
    (not split * P), every rank starts with >= split items, and the work is the same in both
    policies (it is the same tree)."""
    import numpy as np

    sys.path.insert(0, str(REPO / "benchmarks"))
    import simulate_scaling as sim

    # a recorded tree by hand: 3 roots, each with 2 children of equal cost
    rec = {"cost": np.array([1e-3, 5e-4, 5e-4] * 3), "regions": np.ones(9, int),
           "kids": [(1, 2), (), (), (4, 5), (), (), (7, 8), (), ()], "roots": [0, 3, 6]}
    node = 1e-6
    tree = sim.Tree(rec, 4096, node)
    P, split = 256, 16
    two = sim.simulate(tree, P, 1e-4, 2e-5, node, split=split, two_stage=True)
    old = sim.simulate(tree, P, 1e-4, 2e-5, node, split=split, two_stage=False)
    assert abs(two["work"] - old["work"]) < 1e-9 * old["work"]
    assert two["static_replicated_seconds"] <= (P + 2) * node * 1.0001
    assert old["static_replicated_seconds"] >= (split * P - 2) * node * 0.9999
    assert two["static_seconds"] < old["static_seconds"]
    assert two["efficiency"] > old["efficiency"]
    assert sim.write_seconds(1e9, 10, 1e7, 1e9) == 10.0 and sim.write_seconds(1e9, 1000, 1e7, 1e9) == 1.0
