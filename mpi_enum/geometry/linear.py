"""Linear regions: regions whose input-to-output affine maps are equal and that connect through
shared facets.

A region's map is the output layer's ``y = Ao u + co`` in the domain's orthonormal coordinates
(:func:`mpi_enum.post.geometry.region_maps` with the output layer, on the network with unit
hidden rows: every output is the true one divided by one positive constant, the same for every
region, so equality is unaffected).  Two maps are equal when they agree entrywise within
``MAP_RTOL`` of the larger of the two maps' largest entries (or of the whole result's, for
maps near zero: ``scale``).

* :func:`maps_equal`: the comparison, used on the two sides of every edge;
* :func:`components`: linear-region ids from the equal-map edges (connected components,
  numbered by their lowest region row, so the ids do not depend on the rank count);
* :func:`map_keys`: the maps rounded to ``KEY_DIGITS`` relative digits, for counting distinct
  maps over the whole result (maps equal within rounding can, rarely, straddle a rounding step
  and count twice: the count is exact for maps that differ by more than 10^-KEY_DIGITS).

May import: numpy, scipy.
"""
from __future__ import annotations

import numpy as np

MAP_RTOL = 1e-9
KEY_DIGITS = 8


def flat_maps(Ao, co):
    """(n, n_out * k + n_out): every region's map as one row."""
    return np.concatenate([Ao.reshape(len(Ao), -1), co], axis=1)


def maps_equal(F1, F2, scale):
    """Row-wise equality of two batches of flat maps within MAP_RTOL (relative)."""
    ref = np.maximum(np.maximum(np.abs(F1).max(axis=1, initial=0.0), np.abs(F2).max(axis=1, initial=0.0)),
                     1e-3 * scale)
    return np.abs(F1 - F2).max(axis=1, initial=0.0) <= MAP_RTOL * np.maximum(ref, 1e-300)


def map_keys(F, scale):
    """uint8 byte rows: the maps rounded to KEY_DIGITS digits relative to ``scale``."""
    R = np.round(F / max(scale, 1e-300), KEY_DIGITS) + 0.0  # + 0.0: -0.0 becomes 0.0
    return np.ascontiguousarray(R).view(np.uint8).reshape(len(R), -1)


def components(n, pairs):
    """Component id of each of ``n`` regions joined by ``pairs`` (int (m, 2)); ids 0.. in the
    order of each component's lowest region."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    A = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(A, directed=False)
    # renumber by lowest member (connected_components numbers them in that order already; make sure)
    first = np.full(labels.max() + 1 if n else 0, n, np.int64)
    np.minimum.at(first, labels, np.arange(n))
    rank = np.empty_like(first)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[labels].astype(np.int64)
