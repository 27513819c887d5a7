"""Shared helpers for the post-processing tests: small networks and serial result files.

The result files are written by the real writer (:func:`mpi_enum.results.write_result`, comm=None)
from :func:`mpi_enum.engine.enumerate_serial`, so no MPI is needed.
"""
from __future__ import annotations

import shutil

import numpy as np


def random_net(path, widths, seed=0, lo=None, hi=None):
    """He-initialised random ReLU MLP ``widths = [d, n1, ..., nL, out]`` saved as .npz."""
    rng = np.random.default_rng(seed)
    arrs = {}
    for i in range(len(widths) - 1):
        arrs[f"W{i}"] = rng.normal(size=(widths[i + 1], widths[i])) * np.sqrt(2.0 / widths[i])
        arrs[f"b{i}"] = rng.normal(size=widths[i + 1]) * 0.3
    if lo is not None:
        arrs["input_lo"] = np.asarray(lo, float)
        arrs["input_hi"] = np.asarray(hi, float)
    np.savez(path, **arrs)
    return str(path)


def write_serial_result(net_path, out_path, tol=1e-9, **domain_kw):
    """Enumerate ``net_path`` over a domain (make_domain keywords) serially; write ``out_path``."""
    from mpi_enum.domain import make_domain
    from mpi_enum.engine import Problem, enumerate_serial
    from mpi_enum.network import load_network
    from mpi_enum.results import RegionBuffer, write_result

    net = load_network(str(net_path))
    dom = make_domain(net, **domain_kw)
    prob = Problem(net, dom, tol)
    regions, stats = enumerate_serial(prob)
    buf = RegionBuffer(prob.pattern_bytes, dom.d, prob.L)
    for bits, yc, r, ranks in regions:
        buf.append(np.packbits(np.frombuffer(bits, dtype=np.uint8)), dom.to_x(yc), r * dom.rscale, ranks)
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
