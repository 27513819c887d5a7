"""The decision boundary of a 2-D partition (a 2-input network or a ``--plane`` slice).

The predicted class is the arg-max output (for one output, ``output > 0``, as ``plot --color-by
class`` draws it).  The outputs are continuous, so the class changes only where two outputs tie:
inside a region, whose outputs are affine, that is a straight chord.  Region by region, the
region's polygon is cut into its class cells (``o_c >= o_c'`` for every c'); the cells' edges
that lie inside the polygon are the boundary segments, each kept once with its two classes.  A
tie that runs exactly along a facet (possible only in degenerate networks) is not a chord of
either region and is not reported.

May import: numpy, :mod:`mpi_enum.post.geometry`.
"""
from __future__ import annotations

import numpy as np

from ..post.geometry import convex_polygon


def _class_rows(Ao, co, c):
    """Half-planes of class c's cell: (o_c' - o_c)(u) <= 0 for every c' != c (one output: the
    sign of o, class 1 = positive)."""
    if len(co) == 1:
        sgn = -1.0 if c == 1 else 1.0
        return sgn * Ao, -sgn * co
    others = [j for j in range(len(co)) if j != c]
    return Ao[others] - Ao[c], co[c] - co[others]


def region_boundary(V, H, g, Ao, co, box):
    """Decision-boundary segments inside the convex polygon ``V`` (counter-clockwise) of the
    region ``{H u <= g}`` whose outputs are ``Ao u + co``: list of (p, q, c1, c2), c1 < c2."""
    n_cls = max(len(co), 2)
    if len(V) < 3:
        return []
    ext = float(np.abs(V - V.mean(axis=0)).max()) or 1.0
    eps = 1e-9 * ext
    out = []
    for c in range(n_cls):
        A, b = _class_rows(Ao, co, c)
        nrm = np.linalg.norm(A, axis=1)
        live = nrm > 1e-14 * max(float(nrm.max(initial=0.0)), 1e-300)
        if not live.any():
            continue
        cell = convex_polygon(A[live] / nrm[live, None], b[live] / nrm[live], box, start=V)
        for a_, b_ in zip(cell, np.roll(cell, -1, axis=0)):
            mid = (a_ + b_) / 2
            if np.linalg.norm(b_ - a_) <= eps or np.any(H @ mid - g > -eps):
                continue  # on the region's boundary
            o = Ao @ mid + co
            if len(co) == 1:
                partner = 1 - c
            else:
                o = o.copy()
                o[c] = -np.inf
                partner = int(np.argmax(o))
            if c < partner:
                out.append((a_, b_, c, partner))
    return out


def segment_lengths(segments):
    return np.array([float(np.linalg.norm(q - p)) for p, q, _, _ in segments])
