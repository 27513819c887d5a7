"""Exact volumes of bounded convex polytopes from their vertices and constraint rows, in any
dimension, without triangulating the boundary (``mpi-enum graph --vertices`` above k = 6).

The recursion over faces (Lasserre's formula, with cone heights measured inside each face):
the k-volume of a face F with a point p in its relative interior is

    vol_k(F) = (1 / k) * sum over the facets G of F of  height(p, aff G) * vol_{k-1}(G),

a face of dimension 0 has volume 1.  A face is known by its vertex set: the facets of F are the
vertex sets ``S_F & tight_j`` (the vertices of F on row j) that span an affine space of
dimension dim F - 1; distinct rows that cut the same facet count once, so vertices on more
than k rows (corners, degenerate arrangements) need no special case.  Faces are memoised by
their vertex sets (a face is reached from each of the faces above it).  Each step is an SVD of a
face's vertex differences, so the cost grows with the number of faces (3^k for a k-cube), which
is what ``MAX_FACES`` bounds.

May import: numpy.
"""
from __future__ import annotations

import numpy as np

TIGHT_REL = 1e-9  # a vertex lies on row j when H_j v - g_j >= -TIGHT_REL * (extent + 1)
RANK_REL = 1e-9  # singular values above this times the extent count towards a face's dimension
MAX_FACES = 2_000_000  # faces visited per polytope before giving up (ValueError)


def _basis(P, rel):
    """Orthonormal basis (columns) of the span of the rows of P (already centred)."""
    if len(P) == 0:
        return np.zeros((P.shape[1] if P.ndim == 2 else 0, 0))
    _, s, Vt = np.linalg.svd(P, full_matrices=False)
    r = int(np.sum(s > rel))
    return Vt[:r].T


def polytope_volume(V, H, g):
    """The k-volume of ``conv(V) = {u : H u <= g}`` (V: its vertices (n, k), every one satisfying
    every row; H: rows (m, k); g (m,)).  Raises ValueError if the vertices do not span k
    dimensions or the face count exceeds :data:`MAX_FACES`."""
    V = np.asarray(V, float)
    H = np.asarray(H, float)
    g = np.asarray(g, float)
    n, k = V.shape
    if n == 0:
        return 0.0
    centre = V.mean(axis=0)
    ext = float(np.abs(V - centre).max()) or 1.0
    Vc = (V - centre) / ext  # unit extent: tolerances are relative
    nrm = np.linalg.norm(H, axis=1)
    nrm = np.where(nrm > 0, nrm, 1.0)
    slack = ((V @ H.T) - g) / (nrm * ext)  # <= 0 inside, in units of the extent
    tight = slack >= -TIGHT_REL  # (n, m)
    full = _basis(Vc - Vc[0], RANK_REL)
    if full.shape[1] != k:
        raise ValueError(f"the vertices span {full.shape[1]} of {k} dimensions")
    memo = {}
    visited = [0]

    def vol(idx, dim):
        key = idx.tobytes()
        got = memo.get(key)
        if got is not None:
            return got
        visited[0] += 1
        if visited[0] > MAX_FACES:
            raise ValueError(f"more than {MAX_FACES} faces")
        if dim == 0:
            memo[key] = 1.0
            return 1.0
        P = Vc[idx]
        p = P.mean(axis=0)
        if dim == 1:  # a segment: its two ends are the extreme vertices along it
            d = P - P[0]
            ax = d[np.argmax(np.linalg.norm(d, axis=1))]
            t = d @ (ax / np.linalg.norm(ax))
            out = float(t.max() - t.min())
            memo[key] = out
            return out
        T = tight[idx]  # (|F|, m)
        cnt = T.sum(axis=0)
        cand = np.flatnonzero((cnt >= dim) & (cnt < len(idx)))  # a facet has >= dim vertices
        seen = set()
        total = 0.0
        for j in cand:
            sub = idx[T[:, j]]
            sk = sub.tobytes()
            if sk in seen:
                continue
            seen.add(sk)
            Q = Vc[sub]
            B = _basis(Q - Q[0], RANK_REL)
            if B.shape[1] != dim - 1:
                continue  # a lower-dimensional face of F, not a facet
            w = p - Q[0]
            h = float(np.linalg.norm(w - B @ (B.T @ w)))
            if h > 0.0:
                total += h * vol(sub, dim - 1)
        out = total / dim
        memo[key] = out
        return out

    return vol(np.arange(n), k) * ext ** k
