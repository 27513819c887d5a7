"""Issue #6 item 4: bad input gives exit 2 and exactly one line on stderr that names the file (or
option) and the problem, never a traceback; also under ``mpiexec -n 2``.  Plus a property-based fuzz
of the loaders: random bytes and corruptions of valid files raise InputError or load a valid network.
"""
from __future__ import annotations

import re
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, run_cli, run_mpi, save_npz

try:  # the fuzz tests need hypothesis (a test extra); the rest of the file does not
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = settings = st = HealthCheck = None


def _good_net(tmp_path, d=3, name="net.npz"):
    rng = np.random.default_rng(0)
    Ws = [rng.normal(size=(4, d)), rng.normal(size=(3, 4)), rng.normal(size=(1, 3))]
    bs = [rng.normal(size=4), rng.normal(size=3), rng.normal(size=1)]
    return save_npz(tmp_path / name, Ws, bs), Ws, bs


def assert_bad_input(p, names=(), problem=None):
    """exit 2, one non-empty stderr line naming every string in ``names`` and matching ``problem``."""
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr
    assert p.returncode == 2, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"expected one line on stderr, got {lines!r}"
    for name in names:
        assert str(name) in lines[0], f"{name!r} is not named in {lines[0]!r}"
    if problem is not None:
        assert re.search(problem, lines[0], re.IGNORECASE), f"{problem!r} not in {lines[0]!r}"
    return lines[0]


# ----------------------------------------------------------------------------- bad network files

def _truncated_npz(tmp_path):
    good, _, _ = _good_net(tmp_path, name="full.npz")
    data = good.read_bytes()
    p = tmp_path / "trunc.npz"
    p.write_bytes(data[: len(data) // 2])
    return p


def _truncated_nnet(tmp_path, data_dir):
    lines = (data_dir / "small_d3.nnet").read_text().splitlines()
    p = tmp_path / "trunc.nnet"
    p.write_text("\n".join(lines[: len(lines) * 2 // 3]) + "\n")
    return p


def _weights_npz(tmp_path, value, name):
    good, Ws, bs = _good_net(tmp_path, name="g.npz")
    Ws[1] = Ws[1].copy()
    Ws[1][1, 2] = value
    return save_npz(tmp_path / name, Ws, bs)


def _nan_nnet(tmp_path, data_dir):
    lines = (data_dir / "small_d3.nnet").read_text().splitlines()
    i = next(k for k, ln in enumerate(lines) if not ln.startswith("//")) + 8  # a first-layer weight row
    toks = lines[i].split(",")
    toks[1] = "nan"
    lines[i] = ",".join(toks)
    p = tmp_path / "nan.nnet"
    p.write_text("\n".join(lines) + "\n")
    return p


def _mismatched_npz(tmp_path):
    rng = np.random.default_rng(1)
    p = tmp_path / "mismatch.npz"
    np.savez(p, W0=rng.normal(size=(5, 3)), b0=np.zeros(5), W1=rng.normal(size=(1, 4)), b1=np.zeros(1))
    return p


def _bias_mismatch_npz(tmp_path):
    p = tmp_path / "bias.npz"
    np.savez(p, W0=np.ones((5, 3)), b0=np.zeros(4), W1=np.ones((1, 5)), b1=np.zeros(1))
    return p


def _gap_npz(tmp_path):
    p = tmp_path / "gap.npz"
    np.savez(p, W0=np.ones((5, 3)), b0=np.zeros(5), W1=np.ones((4, 5)), b1=np.zeros(4),
             W3=np.ones((1, 4)), b3=np.zeros(1))
    return p


def _complex_npz(tmp_path):
    p = tmp_path / "complex.npz"
    np.savez(p, W0=np.ones((5, 3)) * (1 + 1j), b0=np.zeros(5), W1=np.ones((1, 5)), b1=np.zeros(1))
    return p


NET_CASES = {
    "layer_gap": (lambda t, dd: _gap_npz(t), r"W2|missing"),
    "complex_weights": (lambda t, dd: _complex_npz(t), r"complex|real"),
    "hidden_layer_missing": (lambda t, dd: (np.savez(t / "one.npz", W0=np.ones((1, 3)), b0=np.zeros(1)),
                                            t / "one.npz")[1], r"hidden|layer"),
    "missing": (lambda t, dd: t / "nope.npz", r"no such|not found|does not exist|missing"),
    "truncated_npz": (lambda t, dd: _truncated_npz(t), r"truncat|corrupt|not a|readable|invalid|bad"),
    "truncated_nnet": (lambda t, dd: _truncated_nnet(t, dd), r"truncat|missing|incomplete|expected"),
    "nan_weights": (lambda t, dd: _weights_npz(t, np.nan, "nan.npz"), r"nan"),
    "inf_weights": (lambda t, dd: _weights_npz(t, np.inf, "inf.npz"), r"inf"),
    "nan_nnet": (lambda t, dd: _nan_nnet(t, dd), r"nan"),
    "mismatched_shapes": (lambda t, dd: _mismatched_npz(t), r"shape|mismatch|match"),
    "bias_mismatch": (lambda t, dd: _bias_mismatch_npz(t), r"shape|mismatch|match"),
    "unsupported_ext": (lambda t, dd: (t / "net.txt").write_text("1 2 3") and t / "net.txt",
                        r"unsupported|unknown|format|extension"),
    "directory": (lambda t, dd: (t / "d.npz").mkdir() or t / "d.npz", r"directory"),
}


@pytest.mark.parametrize("case", sorted(NET_CASES))
def test_bad_network_file(case, tmp_path, data_dir):
    make, problem = NET_CASES[case]
    path = make(tmp_path, data_dir)
    p = run_cli(["run", path, "-o", tmp_path / "out.h5"], timeout=60)
    assert_bad_input(p, names=[path.name], problem=problem)
    assert not (tmp_path / "out.h5").exists()


# ----------------------------------------------------------------------------- bad domains and options

def _npy(tmp_path, name, arr):
    np.save(tmp_path / name, np.asarray(arr, dtype=float))
    return tmp_path / name


def _npz_poly(tmp_path, name, A, b):
    np.savez(tmp_path / name, A=np.asarray(A, float), b=np.asarray(b, float))
    return tmp_path / name


DOMAIN_CASES = {
    # name: (argv builder -> (args, names), problem regex)
    "box_wrong_dim": (lambda t: (["--box", "0,0", "1,1"], ["--box"]), r"3|dimension|values"),
    "box_lo_gt_hi": (lambda t: (["--box", "1", "0"], ["--box"]), r"lo|empty|>"),
    "box_lo_gt_hi_list": (lambda t: (["--box", "0,0,2", "1,1,1"], ["--box"]), r"lo|empty|>"),
    "box_all_fixed": (lambda t: (["--box", "0.5", "0.5"], ["--box"]), r"fixed|interior|empty"),
    "box_not_a_number": (lambda t: (["--box", "a", "1"], ["--box"]), r"number"),
    "polytope_empty": (lambda t: (["--polytope", _npz_poly(t, "e.npz", [[1, 0, 0], [-1, 0, 0]], [-1, -1])],
                                  ["e.npz"]), r"empty|infeasible|interior"),
    "polytope_flat": (lambda t: (["--polytope", _npz_poly(t, "f.npz", [[1, 0, 0], [-1, 0, 0]], [0.5, -0.5])],
                                 ["f.npz"]), r"empty|interior"),
    "polytope_zero_row": (lambda t: (["--polytope", _npz_poly(t, "z.npz", [[0, 0, 0], [1, 0, 0]], [-1, 1])],
                                     ["z.npz"]), r"empty|0 <="),
    "polytope_wrong_dim": (lambda t: (["--polytope", _npz_poly(t, "w.npz", np.eye(2), [1, 1])], ["w.npz"]),
                           r"shape|dimension"),
    "polytope_missing": (lambda t: (["--polytope", t / "none.npz"], ["none.npz"]), r"no such|not found"),
    "ball_negative_radius": (lambda t: (["--ball", _npy(t, "c.npy", [0, 0, 0]), "-0.5"], ["--ball"]),
                             r"radius|>= 0|negative"),
    "ball_wrong_dim": (lambda t: (["--ball", _npy(t, "c2.npy", [0, 0]), "0.5"], ["c2.npy"]), r"shape|dimension"),
    "ball_outside_box": (lambda t: (["--ball", _npy(t, "c3.npy", [5, 5, 5]), "0.5"], ["--ball"]),
                         r"empty|does not meet|outside"),
    "plane_wrong_dim": (lambda t: (["--plane", _npy(t, "p.npy", np.eye(3)[:, :2])], ["p.npy"]),
                        r"shape|dimension"),
    "plane_collinear": (lambda t: (["--plane", _npy(t, "pc.npy", [[0, 0, 0], [1, 1, 1], [2, 2, 2]])], ["pc.npy"]),
                        r"collinear|degenerate|empty"),
    "line_wrong_dim": (lambda t: (["--line", _npy(t, "l.npy", np.ones((2, 4)))], ["l.npy"]), r"shape|dimension"),
    "line_same_points": (lambda t: (["--line", _npy(t, "ls.npy", np.ones((2, 3)))], ["ls.npy"]),
                         r"coincide|same|empty|degenerate"),
    "output_is_directory": (lambda t: (((t / "outdir").mkdir(), ["-o", t / "outdir"])[1], ["outdir"]),
                            r"directory"),
    "two_domains": (lambda t: (["--box", "0", "1", "--unbounded"], ["--box", "--unbounded"]), r"one|both|not allowed"),
    "bad_tol": (lambda t: (["--tol", "-1"], ["--tol"]), r"tol|> 0|positive"),
    "unknown_option": (lambda t: (["--frobnicate"], ["--frobnicate"]), r"unrecognized|unknown"),
}


@pytest.mark.parametrize("case", sorted(DOMAIN_CASES))
def test_bad_domain_or_option(case, tmp_path):
    net, _, _ = _good_net(tmp_path)
    build, problem = DOMAIN_CASES[case]
    args, names = build(tmp_path)
    p = run_cli(["run", net, "-o", tmp_path / "out.h5", *args], timeout=60)
    assert_bad_input(p, names=[Path(n).name if isinstance(n, Path) else n for n in names], problem=problem)
    assert not (tmp_path / "out.h5").exists()


def test_existing_output_is_left_untouched(tmp_path):
    net, _, _ = _good_net(tmp_path)
    out = tmp_path / "out.h5"
    payload = bytes(range(256)) * 7
    out.write_bytes(payload)
    before = out.stat()
    p = run_cli(["run", net, "-o", out], timeout=60)
    assert_bad_input(p, names=["out.h5"], problem=r"exists|force")
    assert out.read_bytes() == payload
    after = out.stat()
    assert (after.st_mtime_ns, after.st_size, after.st_ino) == (before.st_mtime_ns, before.st_size, before.st_ino)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["net.npz", "out.h5"]


@pytest.mark.parametrize("sub", [["info"], ["info", "--json"]])
def test_info_on_bad_files(tmp_path, sub):
    (tmp_path / "x.h5").write_bytes(b"garbage")
    p = run_cli([sub[0], tmp_path / "x.h5", *sub[1:]], timeout=60)
    assert_bad_input(p, names=["x.h5"])
    p = run_cli([sub[0], tmp_path / "missing.h5", *sub[1:]], timeout=60)
    assert_bad_input(p, names=["missing.h5"], problem=r"no such|not found")


def test_no_subcommand_is_usage_error():
    p = run_cli([], timeout=60)
    assert_bad_input(p)


# ----------------------------------------------------------------------------- under mpiexec -n 2

MPI_CASES = ["missing", "nan_weights", "existing_output", "box_lo_gt_hi"]


@pytest.mark.parametrize("case", MPI_CASES)
def test_bad_input_under_mpiexec(case, tmp_path, data_dir, mpiexec):
    net, _, _ = _good_net(tmp_path)
    out = tmp_path / "out.h5"
    args, names = ["run", net, "-o", out], [net.name]
    if case == "missing":
        args[1] = tmp_path / "nope.npz"
        names = ["nope.npz"]
    elif case == "nan_weights":
        args[1] = _weights_npz(tmp_path, np.nan, "nan.npz")
        names = ["nan.npz"]
    elif case == "existing_output":
        out.write_bytes(b"keep me")
        names = ["out.h5"]
    elif case == "box_lo_gt_hi":
        args += ["--box", "1", "0"]
        names = ["--box"]
    try:
        p = run_mpi(2, args, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("mpiexec -n 2 hung on bad input")
    assert_bad_input(p, names=names)
    if case == "existing_output":
        assert out.read_bytes() == b"keep me"
    else:
        assert not out.exists()


# ----------------------------------------------------------------------------- loader fuzz (in-process)

def _valid_or_input_error(path):
    """load_network either raises InputError or returns a network that satisfies CONTRACT §1."""
    from mpi_enum.errors import InputError
    from mpi_enum.loaders import load_network

    try:
        net = load_network(str(path))
    except InputError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg.strip(), repr(msg)
        assert Path(path).name in msg, f"the message does not name the file: {msg!r}"
        return None
    assert len(net.weights) == len(net.biases) >= 2
    n_in = net.weights[0].shape[1]
    for W, b in zip(net.weights, net.biases):
        assert W.dtype == np.float64 and b.dtype == np.float64
        assert W.ndim == 2 and b.shape == (W.shape[0],) and W.shape[1] == n_in and W.size > 0
        assert np.all(np.isfinite(W)) and np.all(np.isfinite(b))
        n_in = W.shape[0]
    lo, hi = net.default_box()
    assert lo.shape == hi.shape == (net.input_dim,) and np.all(lo <= hi)
    assert np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))
    return net


_SEEDS = {}


def _seed_files():
    """Valid seed files (bytes): one stored and one compressed .npz, and a .nnet (computed once).
    Not a fixture, so that Hypothesis does not print the bytes with every failing example."""
    if not _SEEDS:
        import io

        rng = np.random.default_rng(2)
        arrs = dict(W0=rng.normal(size=(4, 3)), b0=rng.normal(size=4), W1=rng.normal(size=(2, 4)),
                    b1=rng.normal(size=2), input_lo=-np.ones(3), input_hi=np.ones(3))
        for name, fn in (("stored.npz", np.savez), ("compressed.npz", np.savez_compressed)):
            buf = io.BytesIO()
            fn(buf, **arrs)
            _SEEDS[name] = buf.getvalue()
        _SEEDS["small.nnet"] = (DATA / "small_d3.nnet").read_bytes()
    return _SEEDS


@pytest.fixture(scope="module")
def seeds(data_dir):
    return _seed_files()


if given is None:  # pragma: no cover
    def _skip(*a, **k):
        return lambda fn: pytest.mark.skip(reason="hypothesis is not installed")(fn)

    class _St:
        def __getattr__(self, name):
            return lambda *a, **k: None

    FUZZ, given, st = _skip(), _skip, _St()
else:
    FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(data=st.binary(max_size=2048), ext=st.sampled_from([".npz", ".nnet"]))
def test_fuzz_random_bytes(tmp_path, data, ext):
    p = tmp_path / f"fuzz{ext}"
    p.write_bytes(data)
    _valid_or_input_error(p)


@FUZZ
@given(data=st.data(), seed_name=st.sampled_from(["stored.npz", "compressed.npz", "small.nnet"]))
def test_fuzz_corrupted_valid_files(tmp_path, seeds, data, seed_name):
    raw = bytearray(_seed_files()[seed_name])
    op = data.draw(st.sampled_from(["truncate", "flip", "splice", "delete"]))
    if op == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif op == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
    elif op == "splice":
        i = data.draw(st.integers(0, len(raw)))
        raw[i:i] = data.draw(st.binary(min_size=1, max_size=64))
    else:
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i: i + data.draw(st.integers(1, 64))] = b""
    p = tmp_path / f"fuzz{Path(seed_name).suffix}"
    p.write_bytes(bytes(raw))
    _valid_or_input_error(p)


@FUZZ
@given(data=st.data())
def test_fuzz_nnet_tokens(tmp_path, seeds, data):
    """Textual corruptions of a .nnet: a token replaced by odd text, a line dropped or repeated."""
    lines = _seed_files()["small.nnet"].decode().splitlines()
    i = data.draw(st.integers(0, len(lines) - 1))
    op = data.draw(st.sampled_from(["token", "drop", "dup"]))
    if op == "token":
        toks = lines[i].split(",")
        j = data.draw(st.integers(0, len(toks) - 1))
        toks[j] = data.draw(st.sampled_from(["nan", "inf", "-inf", "", "x", "1e400", "0", "-1", "3.5", "1e-400",
                                             "99999999", "1,2", " "]))
        lines[i] = ",".join(toks)
    elif op == "drop":
        del lines[i]
    else:
        lines.insert(i, lines[i])
    p = tmp_path / "fuzz.nnet"
    p.write_text("\n".join(lines) + "\n")
    _valid_or_input_error(p)


def test_fuzz_oracle_accepts_the_seeds(tmp_path, seeds):
    """The fuzz oracle is not vacuous: the uncorrupted seeds load into valid networks."""
    for name, raw in seeds.items():
        (tmp_path / name).write_bytes(raw)
        assert _valid_or_input_error(tmp_path / name) is not None


@pytest.mark.parametrize("kind", ["random_npz", "random_nnet", "zip_without_arrays", "npz_bad_member"])
def test_fuzzed_files_through_cli(tmp_path, kind):
    rng = np.random.default_rng(5)
    if kind == "random_npz":
        p = tmp_path / "r.npz"
        p.write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    elif kind == "random_nnet":
        p = tmp_path / "r.nnet"
        p.write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    elif kind == "zip_without_arrays":
        p = tmp_path / "z.npz"
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("readme.txt", "hello")
    else:
        p = tmp_path / "m.npz"
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("W0.npy", b"\x93NUMPY garbage")
            z.writestr("b0.npy", b"\x00" * 10)
    proc = run_cli(["run", p, "-o", tmp_path / "o.h5"], timeout=60)
    assert_bad_input(proc, names=[p.name])
