"""Vertices and exact volumes of bounded regions (``mpi-enum graph --vertices``).

A region ``{H u <= g}`` (domain coordinates ``u``, input units) with a point ``u0`` strictly
inside: its vertices are qhull's halfspace intersection (:class:`scipy.spatial.HalfspaceIntersection`,
dual convex hull), merged where qhull returns one vertex several times (a vertex on more than
k hyperplanes).  Its k-volume: up to k = 6 the convex hull's (:class:`scipy.spatial.ConvexHull`,
a triangulation summed exactly in floating point), and wherever qhull's hull fails (it can, on
the many coplanar vertices of a 6-dimensional region) or k >= 7, the recursion over faces of
:mod:`mpi_enum.geometry.volume` (no triangulation: qhull's hull of an 8-dimensional region
did not finish in 10 minutes; the recursion takes seconds).  k = 1: the interval's two ends and
length.  Up to ``MAX_VERTEX_DIM`` = 8 (the face count, and so the time, grows about as 3^k).

May import: numpy, scipy, :mod:`mpi_enum.geometry.volume`.
"""
from __future__ import annotations

import numpy as np

from .volume import polytope_volume

MAX_VERTEX_DIM = 8
HULL_MAX_DIM = 6  # qhull's convex hull up to this k, the recursion over faces above
MERGE_REL = 1e-10  # vertices closer than this (relative to the region's extent) are one


def _interval(H, g, u0):
    h = H[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        hi = np.min(np.where(h > 1e-300, g / h, np.inf))
        lo = np.max(np.where(h < -1e-300, g / h, -np.inf))
    V = np.array([[lo], [hi]])
    return V, float(hi - lo)


def _merge(V):
    ext = float(np.abs(V - V.mean(axis=0)).max()) or 1.0
    key = np.round(V / (MERGE_REL * ext * 16)).astype(np.int64)
    _, first = np.unique(key, axis=0, return_index=True)
    return V[np.sort(first)]


def _attempts(H, g, u0):
    """Inputs for qhull, tried in turn: the rows as they are, then sorted without repeats (qhull's
    precision failures depend on the order of its input), then in a seeded random order."""
    yield H, g
    M = np.unique(np.round(np.hstack([H, g[:, None]]), 13), axis=0)
    yield M[:, :-1], M[:, -1]
    order = np.random.default_rng(len(H)).permutation(len(H))
    yield H[order], g[order]


def region_vertices(H, g, u0):
    """(vertices (v, k), volume) of the bounded region {H u <= g} around ``u0``.  Every vertex
    is checked to satisfy every row; raises ValueError when qhull cannot build the region in any
    of its :func:`_attempts` (a region flatter than rounding)."""
    from scipy.spatial import ConvexHull, HalfspaceIntersection, QhullError

    k = H.shape[1]
    u0 = np.asarray(u0, float)
    if k == 1:
        return _interval(H, g, u0)
    why = "failed"
    for Ha, ga in _attempts(H, g, u0):
        try:
            V = HalfspaceIntersection(np.hstack([Ha, -ga[:, None]]), u0).intersections
        except QhullError as exc:
            why = str(exc).splitlines()[0] if str(exc) else why
            continue
        if not np.all(np.isfinite(V)):
            raise ValueError("unbounded region")
        V = _merge(V)
        ext = float(np.abs(V - u0).max())
        if (V @ H.T - g).max() > 1e-9 * max(ext, 1e-300):
            why = "a vertex outside the region"
            continue
        if k <= HULL_MAX_DIM:
            try:
                return V, float(ConvexHull(V).volume)
            except QhullError as exc:
                why = str(exc).splitlines()[0] if str(exc) else why
        try:
            return V, polytope_volume(V, H, g)
        except ValueError as exc:
            why = str(exc)
    raise ValueError(f"qhull: {why}")
