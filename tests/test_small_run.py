"""The cheap small run (issue 16's fixed cost) keeps every promise: the deferred checkpoint
journal writes exactly what an immediate one writes and a stop always leaves it on disk; the
low-level attribute and dataset writer makes the objects h5py makes; the provenance lists the
same versions; ``--debug-phases`` reports the run's phases and wall time.  No timing asserts:
speed is measured by ``benchmarks/small_run.py``."""
from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

from conftest import run_cli
from mpi_enum.engine.search import Engine
from mpi_enum.io import checkpoint as C
from mpi_enum.io.h5small import SmallWriter, overwrite_attr
from mpi_enum.io.provenance import installed_version, software_versions
from mpi_enum.model.domain import box_domain
from mpi_enum.model.network import Network
from mpi_enum.model.problem import Problem
from mpi_enum.parallel.driver import run_dynamic, top_partition


def _problem(seed=104, widths=(2, 10, 10)):
    rng = np.random.default_rng(seed)
    dims = list(widths) + [1]
    Ws = [rng.normal(size=(dims[i + 1], dims[i])) for i in range(len(dims) - 1)]
    bs = [rng.normal(size=dims[i + 1]) * 0.5 for i in range(len(dims) - 1)]
    net = Network(Ws, bs, sha256=f"net-{seed}", source="t.npz")
    return Problem(net, box_domain(-np.ones(2), np.ones(2)), 1e-9)


def _patterns(buf):
    return sorted(p.tobytes() for p in buf.arrays()[0])


def _commits(problem, ckdir, defer):
    """Set up a checkpoint, commit the static expansion and a few items; returns the journal."""
    eng = Engine(problem)
    ck = C.Checkpoint.setup(None, problem, ckdir, eng, defer=defer)
    emit = ck.recorder(None)
    lc0 = eng.stats.layer_counts.copy()
    items, top = top_partition(eng, 1, 4, roots=ck.roots)
    for reg in top:
        emit(*reg)
    ck.done(ck.roots, items, emit, eng.stats.layer_counts - lc0)
    for item in items[:5]:
        lc0 = eng.stats.layer_counts.copy()
        ck.done(item, eng.explore(item, emit, budget=3), emit, eng.stats.layer_counts - lc0)
    return ck


def test_deferred_journal_writes_the_same_bytes(tmp_path):
    problem = _problem()
    eager = _commits(problem, str(tmp_path / "eager"), None)
    lazy = _commits(problem, str(tmp_path / "lazy"), 3600.0)
    g = C.generation_dir(str(tmp_path / "lazy"), 0)
    assert sorted(os.listdir(g)) == ["meta.json", "roots.npy"], "deferred: no journal file yet"
    assert lazy.journal.deferred and lazy.journal.pending_bytes > 0 and not lazy.written
    eager.close()
    lazy.close()  # not complete: written and fsynced
    assert lazy.written
    for name in ("rank0.journal", "rank0.regions", "roots.npy"):
        a = (tmp_path / "eager" / "gen0" / name).read_bytes()
        b = (tmp_path / "lazy" / "gen0" / name).read_bytes()
        assert a == b, name
    meta = C.make_meta(problem)
    r1, r2 = C.load_checkpoint(str(tmp_path / "eager"), meta), C.load_checkpoint(str(tmp_path / "lazy"), meta)
    assert r1.n_regions == r2.n_regions and r1.n_records == r2.n_records > 0
    assert sorted(map(C.layout.item_key, r1.open_items)) == sorted(map(C.layout.item_key, r2.open_items))


def test_deferred_journal_is_written_once_its_time_comes(tmp_path):
    ck = _commits(_problem(), str(tmp_path / "ck"), 0.0)  # due at once: written at the first commit
    assert ck.written and not ck.journal.deferred
    assert os.path.getsize(os.path.join(C.generation_dir(str(tmp_path / "ck"), 0), "rank0.journal")) > 0
    ck.close(complete=True)


def test_complete_ephemeral_run_drops_its_journal_and_a_named_folder_keeps_it(tmp_path):
    problem = _problem()
    ref, _ = _run(problem, None)
    ck = tmp_path / "default"
    buf, res = _run(problem, str(ck), defer=3600.0, ephemeral=True)
    assert res["complete"] and not res["journal_written"] and _patterns(buf) == ref
    assert sorted(os.listdir(ck / "gen0")) == ["meta.json", "roots.npy"]
    named = tmp_path / "named"
    buf, res = _run(problem, str(named), defer=3600.0, ephemeral=False)
    assert res["complete"] and res["journal_written"]
    again = C.load_checkpoint(str(named), C.make_meta(problem))
    assert again.complete and again.n_regions == len(ref), "a named checkpoint of a complete run stays complete"


def test_a_stop_within_the_deferral_leaves_a_checkpoint_that_resumes_exactly(tmp_path):
    problem = _problem()
    ref, ref_lc = _run(problem, None)
    ck = str(tmp_path / "ck")
    seen = []
    buf, res = _run(problem, ck, defer=3600.0, ephemeral=True, stop=lambda: len(seen) >= 4,
                    on_done=lambda item, frontier: seen.append(item))
    assert not res["complete"] and res["journal_written"]
    assert os.path.getsize(os.path.join(C.generation_dir(ck, 0), "rank0.journal")) > 0
    buf2, res2 = _run(problem, ck, defer=3600.0, ephemeral=True, resume=True)
    assert res2["complete"] and _patterns(buf2) == ref
    np.testing.assert_array_equal(res2["layer_counts"], ref_lc)


def _run(problem, ckdir, **kw):
    res = run_dynamic(None, problem, split_factor=4, budget=5, checkpoint_dir=ckdir,
                      checkpoint_defer=kw.pop("defer", None), checkpoint_ephemeral=kw.pop("ephemeral", False), **kw)
    buf = res["buffer"]
    if ckdir is None:
        out = (_patterns(buf), res["layer_counts"])
        buf.close()
        return out
    return buf, res


def test_small_writer_makes_the_objects_h5py_makes(tmp_path):
    values = {"s": "text", "b": True, "f": 0.25, "i": np.int64(7), "a": np.array([1, 2, 3], np.int64)}
    arrays = {"g/x": np.arange(6.0).reshape(2, 3), "g/i": np.array([1, 2], np.int64), "h/s": np.zeros(0)}
    files = []
    for how in ("h5py", "small"):
        path = tmp_path / f"{how}.h5"
        with h5py.File(path, "w") as f:
            if how == "h5py":
                for k, v in values.items():
                    f.attrs[k] = v
                for k, v in arrays.items():
                    f.create_dataset(k, data=v)
            else:
                w = SmallWriter(f)
                for k, v in values.items():
                    w.attr(k, v)
                for k, v in arrays.items():
                    w.dataset(k, v)
                w.attr("later", 0.0)
                overwrite_attr(f, "later", 1.5)
        files.append(path)

    def describe(path):
        out = {}
        with h5py.File(path, "r") as f:
            for k in f.attrs:
                t = h5py.h5a.open(f.id, k.encode()).get_type()
                out["@" + k] = (repr(f.attrs[k]), t.get_class(), t.get_size(),
                                t.is_variable_str() if t.get_class() == h5py.h5t.STRING else None)
            for k in arrays:
                ds, pl = f[k], f[k].id.get_create_plist()
                out[k] = (ds.dtype.str, ds.shape, ds[()].tobytes(), pl.get_layout(), pl.get_obj_track_times(),
                          pl.get_nfilters())
                grp = f[k.split("/")[0]].id.get_create_plist()
                out[k + "/.."] = (grp.get_obj_track_times(), grp.get_link_creation_order())
        return out

    a, b = describe(files[0]), describe(files[1])
    assert b.pop("@later")[0] == repr(np.float64(1.5))
    assert a == b


def test_provenance_lists_the_same_versions():
    import scipy

    assert installed_version("scipy") == scipy.__version__
    assert installed_version("no-such-distribution-here") is None
    v = software_versions()
    assert {"mpi_enum", "python", "numpy", "h5py", "hdf5", "h5py_mpi", "scipy", "highspy"} <= set(v)
    v["numpy"] = "changed"
    assert software_versions()["numpy"] == np.__version__, "a fresh dict each call"


@pytest.mark.timeout(120)
def test_debug_phases_reports_the_run(tmp_path, data_dir):
    out = tmp_path / "p.h5"
    p = run_cli(["run", data_dir / "small_d3.npz", "-o", out, "--debug-phases"], check=True)
    line = next(ln for ln in p.stderr.splitlines() if ln.startswith("mpi-enum: phases "))
    rep = json.loads(line[len("mpi-enum: phases "):])
    ph = rep["phases"]
    assert rep["n_ranks"] == 1
    for name in ("plan: network, domain, checks, locks", "checkpoint setup", "search", "provenance",
                 "write: region rows", "write: renamed into place", "total_seconds"):
        assert len(ph[name]) == 1 and ph[name][0] >= 0, name
    with h5py.File(out, "r") as f:
        file_wall = float(f.attrs["wall_seconds"])
    # the file's figure ends at its last row, the printed one after the rename, the total after the clean-up
    assert 0 < file_wall <= rep["wall_seconds"] <= ph["total_seconds"][0]
    assert f"{rep['wall_seconds']:.2f} s wall" in p.stdout
    assert not (tmp_path / "p.h5.checkpoint").exists()
