"""The Python API (CONTRACT §5) without MPI: ``mpi_enum.enumerate`` / ``mpi_enum.open`` / ``Result.save``,
checked against ``mpi-enum run`` in a subprocess on the same inputs, and :class:`RunOptions`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import _env, run_cli

import mpi_enum
from mpi_enum.errors import InputError
from mpi_enum.model.network import Network, random_mlp
from mpi_enum.options import RunOptions

REPO = Path(__file__).resolve().parents[1]
D, WIDTHS, SEED = 2, (6, 5), 11


def _pats(packed):
    return sorted(bytes(r) for r in np.asarray(packed))


def _file(path):
    with h5py.File(path, "r") as f:
        return {"pats": _pats(f["regions/pattern"][()]), "lc": f["layers/n_regions"][()].tolist(),
                "attrs": {k: f.attrs[k] for k in f.attrs}}


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    path = tmp_path_factory.mktemp("api") / "net.npz"
    np.savez(path, **random_mlp(D, WIDTHS, SEED))
    return path


@pytest.fixture(scope="module")
def cli_default(net, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "cli.h5"
    run_cli(["run", net, "-o", out], check=True, timeout=120)
    return out


def _network_object():
    a = random_mlp(D, WIDTHS, SEED)
    n = len(WIDTHS) + 1
    return Network([a[f"W{i}"] for i in range(n)], [a[f"b{i}"] for i in range(n)], a["input_lo"], a["input_hi"])


def test_import_is_cheap_and_lazy():
    code = ("import sys, mpi_enum; heavy = [m for m in ('numpy', 'h5py', 'mpi4py', 'torch') if m in sys.modules]; "
            "assert not heavy, heavy; assert callable(mpi_enum.enumerate) and callable(mpi_enum.open); "
            "assert 'mpi4py' not in sys.modules; "
            "ns = {}; exec('from mpi_enum import *', ns); assert 'open' not in ns and 'enumerate' not in ns")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60)
    assert p.returncode == 0, p.stderr


def test_serial_run_needs_no_mpi(net, tmp_path):
    code = (f"import sys, mpi_enum; r = mpi_enum.enumerate({str(net)!r}); r.save({str(tmp_path / 'o.h5')!r}); "
            f"assert mpi_enum.open({str(tmp_path / 'o.h5')!r}).n_regions == r.n_regions > 0; "
            "assert 'mpi4py' not in sys.modules")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert p.returncode == 0, p.stderr


def test_path_matches_cli_and_saves_the_cli_file(net, cli_default, tmp_path):
    res = mpi_enum.enumerate(str(net))
    want = _file(cli_default)
    assert res.complete and res.comm is None and res.n_local == res.n_regions == len(want["pats"])
    assert _pats(res.patterns) == want["pats"]
    assert res.layer_counts.tolist() == want["lc"]
    N = sum(WIDTHS)
    assert res.patterns.dtype == np.uint8 and res.patterns.shape == (res.n_regions, (N + 7) // 8)
    assert res.interior_points.shape == (res.n_regions, D) and res.radii.shape == (res.n_regions,)
    assert res.affine_ranks.dtype == np.int16 and res.affine_ranks.shape == (res.n_regions, len(WIDTHS))
    bits = res.bits()
    assert bits.shape == (res.n_regions, N) and set(np.unique(bits)) <= {0, 1}
    np.testing.assert_array_equal(np.packbits(bits, axis=1), res.patterns)
    assert (res.network.forward_preacts(res.interior_points) > 0).astype(np.uint8).tolist() == bits.tolist()

    out = tmp_path / "sub" / "api.h5"
    assert res.save(out) == str(out)
    got = _file(out)
    assert got["pats"] == want["pats"] and got["lc"] == want["lc"]
    for k in ("format", "format_version", "n_regions", "input_dim", "complete", "network_sha256", "network_source",
              "domain", "tol", "reduced_dim", "stopped_reason", "n_ranks"):
        assert np.array_equal(got["attrs"][k], want["attrs"][k]), k
    with h5py.File(out, "r") as fa, h5py.File(cli_default, "r") as fc:
        for name in ("regions/interior_point", "regions/radius", "regions/affine_rank", "domain/x0", "domain/E",
                     "network/W0", "network/b2"):
            a, c = fa[name][()], fc[name][()]
            oa, oc = np.lexsort(fa["regions/pattern"][()].T), np.lexsort(fc["regions/pattern"][()].T)
            if name.startswith("regions/"):
                a, c = a[oa], c[oc]
            np.testing.assert_array_equal(a, c, err_msg=name)
        assert sorted(fa["stats"]) == sorted(fc["stats"])
    p = run_cli(["verify", out, net, "--samples", "2000"], timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def test_open_round_trips(net, tmp_path):
    res = mpi_enum.enumerate(net, box=(-0.5, 0.75))
    out = res.save(tmp_path / "a.h5")
    back = mpi_enum.open(out)
    assert back.path == str(out) and back.comm is None
    for name in ("patterns", "interior_points", "radii", "affine_ranks", "layer_counts"):
        a, b = getattr(res, name), getattr(back, name)
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert (back.n_regions, back.complete, back.tol, back.n_ranks) == (res.n_regions, True, res.tol, 1)
    assert back.domain.to_json() == res.domain.to_json()
    assert back.network.sha256 == res.network.sha256
    assert back.network.source == os.path.basename(res.network.source)  # the file keeps the basename
    assert all(np.array_equal(W1, W2) for W1, W2 in zip(back.network.weights, res.network.weights))
    assert back.stats.keys() == res.stats.keys()
    np.testing.assert_array_equal(back.bits(), res.bits())
    # saving what was read gives the same file again
    again = back.save(tmp_path / "b.h5")
    with h5py.File(out, "r") as f1, h5py.File(again, "r") as f2:
        assert {k: str(v) for k, v in f1.attrs.items()} == {k: str(v) for k, v in f2.attrs.items()}
        names = []
        f1.visit(lambda n: names.append(n) if isinstance(f1[n], h5py.Dataset) else None)
        for n in names:
            np.testing.assert_array_equal(f1[n][()], f2[n][()], err_msg=n)
    with pytest.raises(InputError, match="exists.*force=True"):
        back.save(again)
    assert back.save(again, force=True) == str(again)
    with pytest.raises(InputError, match="no such file"):
        mpi_enum.open(tmp_path / "missing.h5")


def test_network_object_and_torch_module(net):
    want = _pats(mpi_enum.enumerate(net).patterns)
    obj = _network_object()
    res = mpi_enum.enumerate(obj)
    assert _pats(res.patterns) == want
    assert len(res.network.sha256) == 64 and obj.sha256 == ""  # the caller's object is not changed
    torch = pytest.importorskip("torch")
    a = random_mlp(D, WIDTHS, SEED)
    layers = []
    for i, w in enumerate(list(WIDTHS) + [1]):
        lin = torch.nn.Linear(a[f"W{i}"].shape[1], w)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(a[f"W{i}"]))
            lin.bias.copy_(torch.from_numpy(a[f"b{i}"]))
        layers += [lin, torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1]).double()
    model.train()
    res = mpi_enum.enumerate(model)  # no box in a torch module: [-1, 1]^2, the npz file's own box
    assert _pats(res.patterns) == want
    assert model.training, "the module's training flag is put back"
    with pytest.raises(InputError, match="Sequential"):
        mpi_enum.enumerate(torch.nn.Linear(2, 3))


def test_domain_arrays_match_cli_files(net, tmp_path):
    lo, hi = np.array([-0.9, -0.4]), np.array([0.6, 1.3])
    plane = np.array([[-1.0, -1.0], [1.0, -0.5], [-0.5, 1.0]])
    A = np.array([[1.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [1.0, -2.0]])
    b = np.array([1.0, 0.8, 0.9, 1.5])
    np.save(tmp_path / "plane.npy", plane)
    np.savez(tmp_path / "poly.npz", A=A, b=b)
    cases = [({"box": (lo, hi)}, ["--box", "-0.9,-0.4", "0.6,1.3"]),
             ({"plane": plane}, ["--plane", tmp_path / "plane.npy"]),
             ({"polytope": (A, b)}, ["--polytope", tmp_path / "poly.npz"])]
    for kw, argv in cases:
        res = mpi_enum.enumerate(net, **kw)
        out = tmp_path / f"{next(iter(kw))}.h5"
        run_cli(["run", net, "-o", out, *argv], check=True, timeout=120)
        want = _file(out)
        assert _pats(res.patterns) == want["pats"], kw
        assert res.layer_counts.tolist() == want["lc"], kw
        assert res.domain.kind == next(iter(kw))
    # the file path and the arrays give the same domain
    assert (mpi_enum.enumerate(net, plane=tmp_path / "plane.npy").n_regions
            == mpi_enum.enumerate(net, plane=plane.tolist()).n_regions)
    line = mpi_enum.enumerate(net, line=plane[:2])
    ball = mpi_enum.enumerate(net, ball=([0.2, 0.1], 0.3))
    assert line.domain.k == 1 and line.n_regions >= 1
    assert ball.domain.spec["kind"] == "ball" and ball.n_regions >= 1


def test_options_reach_the_run(net, tmp_path):
    ck = tmp_path / "ck"
    first = mpi_enum.enumerate(net, checkpoint_dir=ck, split_factor=2, budget=3, spill_bytes=4096,
                               spill_dir=tmp_path / "spill", progress=30)
    assert first.complete and (ck / "gen0").is_dir()
    again = mpi_enum.enumerate(net, checkpoint_dir=ck, resume=True)  # a complete checkpoint: its rows
    assert _pats(again.patterns) == _pats(first.patterns)
    assert again.layer_counts.tolist() == first.layer_counts.tolist()
    with pytest.raises(InputError, match="already holds a checkpoint"):
        mpi_enum.enumerate(net, checkpoint_dir=ck)
    with pytest.raises(TypeError, match="frobnicate"):
        mpi_enum.enumerate(net, frobnicate=1)


def _cli_message(net, tmp_path, argv):
    p = run_cli(["run", net, "-o", tmp_path / "never.h5", *argv], timeout=60)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p.stderr
    assert not (tmp_path / "never.h5").exists()
    prefix = "mpi-enum: error: "
    assert p.stderr.startswith(prefix)
    return p.stderr.strip()[len(prefix):]


BAD = [  # (enumerate keywords, the same input on the command line)
    ({"tol": -1.0}, ["--tol", "-1"]),
    ({"tol": float("nan")}, ["--tol", "nan"]),
    ({"box": (1, 0)}, ["--box", "1", "0"]),
    ({"box": ([0, 0, 0], 1)}, ["--box", "0,0,0", "1"]),
    ({"box": (0, 1), "unbounded": True}, ["--box", "0", "1", "--unbounded"]),
    ({"split_factor": 0}, ["--split-factor", "0"]),
    ({"progress": -2.0}, ["--progress", "-2"]),
    ({"time_limit": 0.0}, ["--time-limit", "0"]),
    ({"tol": 1.0}, ["--tol", "1"]),  # the domain's own inscribed radius is 1 (issue #12 row 12)
]


@pytest.mark.parametrize("kw,argv", BAD, ids=[" ".join(map(str, a)) for _, a in BAD])
def test_bad_input_raises_the_cli_message(net, tmp_path, kw, argv):
    with pytest.raises(InputError) as exc:
        mpi_enum.enumerate(net, **kw)
    assert str(exc.value) == _cli_message(net, tmp_path, argv)


def test_other_bad_inputs(net, tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(InputError) as exc:
        mpi_enum.enumerate(missing)
    assert str(exc.value) == _cli_message(missing, tmp_path, [])
    for kw, pattern in [({"plane": np.ones((2, 2))}, r"--plane.*shape \(3, 2\)"),
                        ({"line": np.ones((2, 2))}, "--line.*coincide"),
                        ({"polytope": (np.eye(3), np.ones(3))}, r"--polytope.*shape \(m, 2\)"),
                        ({"polytope": np.eye(3)}, "--polytope needs two values"),
                        ({"ball": ([5.0, 5.0], 0.5)}, "--ball.*does not meet"),
                        ({"ball": ([0.0, 0.0], -1)}, "--ball RADIUS"),
                        ({"box": ("a", 1)}, "--box LO: not a number"),
                        ({"spill_bytes": 0}, "--spill-mb"),
                        ({"budget": 0}, "--budget"),
                        ({"fail_after": "x"}, "RANK:NODES")]:
        with pytest.raises(InputError, match=pattern):
            mpi_enum.enumerate(net, **kw)
    with pytest.raises(InputError, match="expected a file path"):
        mpi_enum.enumerate(42)
    with pytest.raises(InputError, match="NaN or Inf"):
        bad = _network_object()
        bad.weights[0] = bad.weights[0] * np.nan
        mpi_enum.enumerate(bad)


def test_run_options_from_the_command_line():
    from mpi_enum.cli import build_parser

    ns = build_parser().parse_args(["run", "x.npz", "--tol", "1e-7", "--split-factor", "3", "--spill-mb", "2",
                                    "--budget", "8", "--skew", "--debug-fail-after", "1:50",
                                    "--debug-node-delay", "0.01", "--debug-write-delay", "4"])
    o = RunOptions.from_args(ns)
    assert (o.tol, o.split_factor, o.spill_bytes, o.budget, o.skew) == (1e-7, 3, 2 << 20, 8, True)
    assert (o.fail_after, o.node_delay, o.write_delay) == ((1, 50), 0.01, 4.0)
    d = RunOptions.from_args(build_parser().parse_args(["run", "x.npz"]))
    assert d == RunOptions() and d.spill_limit == 16 << 20 and d.fail_after is None
    help_text = subprocess.run([sys.executable, "-m", "mpi_enum", "run", "--help"], capture_output=True, text=True,
                               env=_env(), timeout=60).stdout
    assert "--spill-mb" in help_text
    assert not any(h in help_text for h in ("--debug", "--budget", "--skew"))
    with pytest.raises(InputError, match="--tol must be a finite number > 0"):
        RunOptions(tol=0)
    with pytest.raises(InputError, match="--resume needs --checkpoint-dir"):
        RunOptions().replace(resume=True)


# the compiled kernel's own build settings (cache folder, off switch, kernel choice), owned by the
# engine; nothing else may configure a run through the environment
ENGINE_BUILD_SETTINGS = {"MPI_ENUM_CACHE", "MPI_ENUM_NO_CKERNEL", "MPI_ENUM_KERNEL"}


def test_no_environment_configuration():
    """Run settings come from RunOptions only: no module reads an MPI_ENUM_* environment
    variable, apart from the engine's kernel build settings."""
    import re

    pat = re.compile(r"(?:environ|getenv)[^\n]*?(MPI_ENUM_\w+)")
    hits = []
    for p in sorted((REPO / "mpi_enum").rglob("*.py")):
        rel = p.relative_to(REPO).as_posix()
        for i, line in enumerate(p.read_text().splitlines()):
            for name in pat.findall(line):
                if not (rel.startswith("mpi_enum/engine/") and name in ENGINE_BUILD_SETTINGS):
                    hits.append(f"{rel}:{i + 1}: {name}")
    assert not hits, hits
