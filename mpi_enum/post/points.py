"""Interior points recomputed from patterns: for files written with ``--points none``.

A region is the polytope its pattern fixes: every gated neuron on its side (a max group's
members below the selected one), inside the domain.  :func:`recompute_points` rebuilds those
half-spaces from the network (:func:`mpi_enum.post.geometry.region_maps`, the maps ``verify``
uses, not the engine's) and solves one Chebyshev LP per region with HiGHS (scipy): the centre of
the largest ball inside, in input coordinates, and its radius.  The radius is at least the one
the file stores (the engine's radius may be capped below the largest), so the stored ball fits
around the recomputed point too, and a forward pass at it reproduces the pattern.

Cost: one LP with k + 1 columns and a row per non-constant neuron and domain face, a few ms at
k = 784.  Recompute what you need (``rows``), not a whole file of 10^7 regions.

May import: :mod:`mpi_enum.post.geometry`, :mod:`mpi_enum.io.reader`, numpy, scipy.
"""
from __future__ import annotations

import numpy as np

from .geometry import Chart, region_halfspaces, region_maps

RADIUS_CAP = 1e6  # the radius of a region without a bounded inscribed ball (unbounded domains)
CHUNK = 256  # regions whose affine maps are built at once


def chebyshev(H, g, cap=RADIUS_CAP):
    """The centre ``u`` and radius ``t`` of the largest ball in ``{H u <= g}`` (unit-norm rows),
    ``t`` at most ``cap``.  Returns ``(u, t)``; ``t`` is -inf when the LP has no solution."""
    from scipy.optimize import linprog

    k = H.shape[1]
    cost = np.zeros(k + 1)
    cost[-1] = -1.0
    A = np.hstack([H, np.ones((len(H), 1))])
    res = linprog(cost, A_ub=A, b_ub=g, bounds=[(None, None)] * k + [(None, cap)], method="highs")
    if res.status != 0:
        return np.zeros(k), -np.inf
    return np.asarray(res.x[:k]), float(res.x[-1])


def recompute_from_bits(net, chart, bits):
    """Points (n, d) and radii (n,) of the regions with patterns ``bits`` (n, N) 0/1, in the
    domain of ``chart`` (a :class:`mpi_enum.post.geometry.Chart`: built once by the caller, a QR
    of the domain's d x k map)."""
    bits = np.asarray(bits)
    n = len(bits)
    X = np.zeros((n, net.input_dim))
    r = np.zeros(n)
    for s in range(0, n, CHUNK):
        b = bits[s:s + CHUNK]
        A, c = region_maps(net, chart, b)
        U = np.zeros((len(b), chart.k))
        for i in range(len(b)):
            H, g = region_halfspaces(A, c, b, chart, i)
            U[i], r[s + i] = chebyshev(H, g)
        X[s:s + len(b)] = chart.to_x(U)
    return X, r


def centre_of(H, g):
    """A point inside ``{H u <= g}``: its Chebyshev centre."""
    return chebyshev(H, g)[0]


def sampled_with_points(ch, net, chart, p, seed):
    """A chunk of rows (``{name: rows}`` of :meth:`mpi_enum.io.reader.Result.chunks`) cut to a
    random share ``p`` of its rows (generator seed ``seed``), with ``interior_point`` recomputed
    from their patterns: what ``verify`` checks row by row in a file without points."""
    pick = np.random.default_rng(seed).random(len(ch["pattern"])) < p
    ch = {key: v[pick] for key, v in ch.items()}
    ch["interior_point"] = recompute_from_bits(
        net, chart, np.unpackbits(ch["pattern"], axis=1, count=net.n_hidden))[0]
    return ch


def recompute_points(result, rows=None):
    """Interior points and radii of a result's regions, recomputed from their patterns.

    ``result``: a path, a :class:`mpi_enum.io.reader.Result` or an :class:`mpi_enum.api.Result`
    (it needs its network: files written by ``mpi-enum run`` carry it).  ``rows``: indices or a
    slice of the rows held (default all).  Returns ``(points (m, d) float64, radii (m,))``; a
    radius is ``-inf`` where a pattern has no region (not a valid row)."""
    from ..errors import InputError
    from ..io.reader import load_result

    if isinstance(result, (str, bytes)) or hasattr(result, "__fspath__"):
        result = load_result(str(result.__fspath__() if hasattr(result, "__fspath__") else result), need_network=True)
    net = getattr(result, "net", None) or getattr(result, "network", None)
    if net is None:
        raise InputError(f"{getattr(result, 'path', '?')}: no network in the result: cannot recompute its points")
    bits = result.bits() if rows is None else result.bits(rows)
    return recompute_from_bits(net, Chart(result.domain), np.atleast_2d(bits))
