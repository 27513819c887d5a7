"""Shared helpers for the post-processing tests: small networks and serial result files.

The result files are written by the real writer (:func:`mpi_enum.results.write_result`, comm=None)
from :func:`mpi_enum.engine.enumerate_serial`, so no MPI is needed.
"""
from __future__ import annotations

import shutil

import numpy as np


def random_net(path, widths, seed=0, lo=None, hi=None):
    """He-initialised random ReLU MLP ``widths = [d, n1, ..., nL, out]`` saved as .npz
    (:func:`mpi_enum.model.network.random_mlp` with biases N(0, 0.3^2)); a default box only if given."""
    from mpi_enum.model.network import random_mlp

    arrs = random_mlp(widths[0], widths[1:-1], seed=seed, n_out=widths[-1], bias_scale=0.3)
    del arrs["input_lo"], arrs["input_hi"]
    if lo is not None:
        arrs["input_lo"] = np.asarray(lo, float)
        arrs["input_hi"] = np.asarray(hi, float)
    np.savez(path, **arrs)
    return str(path)


def write_serial_result(net_path, out_path, tol=1e-9, **domain_kw):
    """Enumerate ``net_path`` over a domain (make_domain keywords) serially; write ``out_path``."""
    from mpi_enum.loaders.domain_options import make_domain
    from mpi_enum.model.problem import Problem
    from mpi_enum.engine.search import enumerate_serial
    from mpi_enum.loaders import load_network
    from mpi_enum.io.results import RegionBuffer, write_result
    from mpi_enum.io.rows import Recorder

    net = load_network(str(net_path))
    dom = make_domain(net, **domain_kw)
    prob = Problem(net, dom, tol)
    regions, stats = enumerate_serial(prob)
    buf = RegionBuffer(prob.pattern_bytes, dom.d, prob.L)
    rec = Recorder(dom, buf.dtype(), buf, keep=False)  # the driver's own row conversion
    for reg in regions:
        rec(*reg)
    meta = {"net": net, "domain": dom, "tol": tol, "wall_seconds": 0.0, "complete": True,
            "software": {}, "command_line": "tests"}
    write_result(str(out_path), None, meta, buf, {"regions": len(regions)}, stats.layer_counts)
    buf.close()
    return str(out_path)


def corrupt_copy(src, dst, drop=None, duplicate=None, point_shift=None):
    """Copy a result file and drop one region / duplicate one region / move an interior point."""
    import h5py

    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        g = f["regions"]
        arrs = {k: g[k][()] for k in ("pattern", "interior_point", "radius", "affine_rank")}
        n = len(arrs["radius"])
        idx = np.arange(n)
        if drop is not None:
            idx = np.delete(idx, drop)
        if duplicate is not None:
            idx = np.append(idx, duplicate)
        for k in arrs:
            a = arrs[k][idx]
            if k == "interior_point" and point_shift is not None:
                i, dx = point_shift
                a = a.copy()
                a[i] += dx
            del g[k]
            g.create_dataset(k, data=a)
        f.attrs["n_regions"] = np.int64(len(idx))
    return str(dst)


def save_points(path, P):
    np.save(path, np.asarray(P, float))
    return str(path)
