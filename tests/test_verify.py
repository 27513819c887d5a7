"""mpi-enum verify: passes on correct results, fails on corrupted copies."""
import argparse
import os
import subprocess
import sys

import numpy as np
import pytest

from _postproc_util import corrupt_copy, random_net, save_points, write_serial_result  # noqa: E402

from mpi_enum.post import verify  # noqa: E402


@pytest.fixture(scope="module")
def d2(tmp_path_factory):
    t = tmp_path_factory.mktemp("verify2")
    net = random_net(t / "net2.npz", [2, 8, 8, 3], seed=1)
    out = write_serial_result(net, t / "res2.h5")
    return t, net, out


def _run(out, net, samples=5000, capsys=None):
    rc = verify.main(argparse.Namespace(out_h5=str(out), network=str(net), samples=samples, seed=0))
    return rc


def _status(checks):
    return {c.name: c.status for c in checks}


def test_passes_on_correct_result(d2, capsys):
    t, net, out = d2
    assert _run(out, net) == 0
    txt = capsys.readouterr().out
    assert "verify: PASSED" in txt
    st = _status(verify.verify_result(out, net, samples=5000))
    assert set(st.values()) <= {"PASS"}, st
    assert st["volumes sum to domain"] == "PASS"
    assert st["sampled coverage"] == "PASS"


def test_fails_when_a_region_is_removed(d2, capsys):
    t, net, out = d2
    import h5py

    with h5py.File(out, "r") as f:
        big = int(np.argmax(f["regions/radius"][()]))  # a region with a sizeable area
    bad = corrupt_copy(out, t / "removed.h5", drop=big)
    assert _run(bad, net, samples=20000) == 1
    assert "verify: FAILED" in capsys.readouterr().out
    st = _status(verify.verify_result(bad, net, samples=20000))
    assert st["volumes sum to domain"] == "FAIL"
    assert st["sampled coverage"] == "FAIL"
    assert st["patterns unique"] == "PASS"


def test_fails_when_a_region_is_duplicated(d2, capsys):
    t, net, out = d2
    bad = corrupt_copy(out, t / "dup.h5", duplicate=3)
    assert _run(bad, net) == 1
    st = _status(verify.verify_result(bad, net, samples=2000))
    assert st["patterns unique"] == "FAIL"
    assert st["volumes sum to domain"] == "FAIL"
    assert st["patterns reproduced"] == "PASS"


def test_fails_when_a_point_moves_out_of_its_region(d2):
    t, net, out = d2
    bad = corrupt_copy(out, t / "moved.h5", point_shift=(0, np.array([0.7, -0.4])))
    st = _status(verify.verify_result(bad, net, samples=1000))
    assert "FAIL" in (st["patterns reproduced"], st["radius margins"], st["points in domain"])


def test_fails_against_another_network(d2):
    t, net, out = d2
    other = random_net(t / "other.npz", [2, 8, 8, 3], seed=99)
    st = _status(verify.verify_result(out, other, samples=1000))
    assert st["network matches"] == "FAIL"
    assert st["patterns reproduced"] == "FAIL"


def test_same_weights_in_another_file_match(d2, tmp_path):
    """Issue 12 row 14: the network matches when /network equals NETWORK's weights, even if the
    file differs (an .npz converted from the model the run used); other weights still fail."""
    t, net, out = d2
    with np.load(net) as z:
        arrs = {k: z[k] for k in z.files}
    copy = tmp_path / "same_weights.npz"
    np.savez_compressed(copy, **arrs)  # another file, other bytes, the same arrays
    st = _status(verify.verify_result(out, str(copy), samples=1000))
    assert set(st.values()) <= {"PASS"}, st
    arrs["W1"] = arrs["W1"] * (1 + 1e-9)
    changed = tmp_path / "changed.npz"
    np.savez(changed, **arrs)
    assert _status(verify.verify_result(out, str(changed), samples=200))["network matches"] == "FAIL"


def test_large_tol_result_verifies(tmp_path):
    """Issue 12 row 11: with a large --tol many thin regions are legitimately missing; verify checks
    every missing pattern's inscribed radius (not only the first 200) and passes a correct result."""
    net = random_net(tmp_path / "n.npz", [2, 10, 10, 10, 2], seed=5)
    out = write_serial_result(net, tmp_path / "big_tol.h5", tol=0.05)
    full = write_serial_result(net, tmp_path / "small_tol.h5", tol=1e-9)
    import h5py

    with h5py.File(out) as f, h5py.File(full) as g:
        n_big, n_all = len(f["regions/radius"]), len(g["regions/radius"])
    assert n_all - n_big > 200, (n_big, n_all)  # more than 200 regions are thinner than tol
    st = _status(verify.verify_result(out, net, samples=20000))
    assert st["sampled coverage"] == "PASS", st
    assert set(st.values()) <= {"PASS", "SKIP"}, st


def test_plane_line_and_3d(tmp_path):
    net5 = random_net(tmp_path / "net5.npz", [5, 8, 8, 2], seed=3)
    rng = np.random.default_rng(0)
    plane = save_points(tmp_path / "plane.npy", rng.normal(size=(3, 5)))
    line = save_points(tmp_path / "line.npy", rng.normal(size=(2, 5)))
    for name, kw in (("plane", {"plane": plane}), ("line", {"line": line}),
                     ("degbox", {"box": ("-1,-1,0.2,-1,0.5", "1,1,0.2,-1,0.5")})):
        out = write_serial_result(net5, tmp_path / f"{name}.h5", **kw)
        st = _status(verify.verify_result(out, net5, samples=3000))
        assert set(st.values()) <= {"PASS"}, (name, st)
        assert st["volumes sum to domain"] == "PASS"
        assert st["points on domain hull"] == "PASS"
    net3 = random_net(tmp_path / "net3.npz", [3, 8, 6, 2], seed=2)
    out = write_serial_result(net3, tmp_path / "r3.h5")
    st = _status(verify.verify_result(out, net3, samples=3000))
    assert set(st.values()) <= {"PASS"}, st
    import h5py

    with h5py.File(out, "r") as f:
        big = int(np.argmax(f["regions/radius"][()]))
    bad = corrupt_copy(out, tmp_path / "r3bad.h5", drop=big)
    st = _status(verify.verify_result(bad, net3, samples=3000))
    assert st["volumes sum to domain"] == "FAIL"


def test_unbounded_skips_volume(tmp_path):
    net = random_net(tmp_path / "n.npz", [2, 6, 6, 2], seed=4)
    out = write_serial_result(net, tmp_path / "u.h5", unbounded=True)
    st = _status(verify.verify_result(out, net, samples=3000))
    assert st["volumes sum to domain"] == "SKIP"
    assert "FAIL" not in st.values(), st


def test_cli_exit_codes(d2, tmp_path):
    t, net, out = d2
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, "-m", "mpi_enum", "verify", str(out), str(net), "--samples", "2000"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASSED" in r.stdout
    bad = corrupt_copy(out, tmp_path / "dup.h5", duplicate=0)
    r = subprocess.run([sys.executable, "-m", "mpi_enum", "verify", bad, str(net), "--samples", "500"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1
    r = subprocess.run([sys.executable, "-m", "mpi_enum", "verify", str(tmp_path / "missing.h5"), str(net)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2
    assert "missing.h5" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    r = subprocess.run([sys.executable, "-m", "mpi_enum", "verify", str(tmp_path / "junk.h5"), str(net)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def _svd_rule(A, bits, widths, stored):
    """The rank rule straight from the SVD of every masked map (the oracle of rank_agreement)."""
    ok, off = [], 0
    for l, w in enumerate(widths):
        M = A[:, off:off + w, :] * bits[:, off:off + w, None]
        off += w
        sv = np.linalg.svd(M, compute_uv=False)
        s0 = sv[:, :1]
        big = float(s0.max())
        hi = np.sum(sv > 1e-13 * s0, axis=1)
        lo = np.sum((sv > 1e-6 * s0) & (sv > 1e-9 * big), axis=1)
        ok.append((stored[:, l] >= lo) & (stored[:, l] <= hi))
    return np.stack(ok, axis=1)


@pytest.mark.parametrize("k,widths", [(4, [24, 24]), (3, [2, 5]), (40, [6, 9])])
def test_rank_agreement_equals_the_svd_rule(k, widths):
    """Gram eigenvalues decide the rank rule where their error bound allows, the SVD elsewhere:
    on maps built with exact rank deficits, singular values at the rule's thresholds (1e-6 and
    1e-13 of the largest, 1e-9 of the batch's largest), zero maps and dead rows, and stored
    ranks off by one either way, the answers equal the SVD's on every row."""
    from mpi_enum.post.geometry import rank_agreement

    rng = np.random.default_rng(k)
    n, N = 3000, sum(widths)
    A = np.empty((n, N, k))
    true_sv = []
    off = 0
    for w in widths:
        q = min(w, k)
        U = np.linalg.qr(rng.normal(size=(n, w, w)))[0][:, :, :q]
        V = np.linalg.qr(rng.normal(size=(n, k, k)))[0][:, :, :q]
        s = np.sort(rng.uniform(0.5, 2.0, size=(n, q)), axis=1)[:, ::-1]
        kind = rng.integers(0, 6, size=n)
        s[kind == 1, -1] = 0.0  # an exact deficit of one
        s[kind == 2, -1] = s[kind == 2, 0] * 1e-6 * rng.choice([0.5, 1.0, 2.0], size=(kind == 2).sum())
        s[kind == 3, -1] = s[kind == 3, 0] * 1e-13 * rng.choice([0.5, 1.0, 2.0], size=(kind == 3).sum())
        s[kind == 4] = 0.0  # a zero map
        s[kind == 5] *= 1e-9 * rng.choice([0.3, 3.0], size=((kind == 5).sum(), 1))  # near 1e-9 big
        A[:, off:off + w, :] = np.einsum("niq,nq,njq->nij", U, s, V)
        true_sv.append(s)
        off += w
    bits = np.ones((n, N), np.uint8)
    bits[rng.random((n, N)) < 0.1] = 0  # masked rows change the maps
    stored = np.stack([np.sum(s > 1e-9, axis=1) for s in true_sv], axis=1)
    stored = stored + rng.integers(-1, 2, size=stored.shape)
    net = argparse.Namespace(hidden_widths=widths)
    got = rank_agreement(net, None, bits, A, stored)
    want = _svd_rule(A, bits, widths, stored)
    assert got.shape == want.shape == (n, len(widths))
    assert np.array_equal(got, want), np.argwhere(got != want)[:5]
    assert 0.2 < want.mean() < 0.9  # both verdicts occur


def test_progress_lines_go_to_stderr(d2, capsys, monkeypatch):
    t, net, out = d2
    monkeypatch.setattr(verify, "GEOMETRY_FLOATS", 16 * 16 * 2)  # 16-row chunks: several lines
    args = argparse.Namespace(out_h5=str(out), network=str(net), samples=500, seed=0, progress=1e-9)
    assert verify.main(args) == 0
    cap = capsys.readouterr()
    assert "rows checked" in cap.err and "patterns: uniqueness" in cap.err
    assert "rows checked" not in cap.out and "verify: PASSED" in cap.out
