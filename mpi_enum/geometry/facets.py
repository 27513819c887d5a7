"""Facets of one region: which of its neuron hyperplanes hold a (k-1)-dimensional piece of its
boundary, each with a witness point inside the facet.

A region is ``{u : H u <= g}`` in the domain's orthonormal coordinates ``u`` (unit rows: its
non-constant neurons' sides, then the domain's rows; :func:`mpi_enum.post.geometry.region_halfspaces`).
Row j *carries a facet* when some point ``p`` with ``H_j p = g_j`` keeps a distance greater than
``facet_tol`` from every other hyperplane of the region while satisfying its inequalities (the
facet then holds a (k-1)-ball of that radius).  Rows that are the same hyperplane with the same
side (two neurons whose functions are proportional on this region) form one *group*: the facet
belongs to the group, and its lowest neuron names it (a degenerate facet).  A group that
contains a domain row lies on the domain's boundary and is not reported.

Decisions, cheapest first:

1. *ray certificates*: from the stored interior point ``u0``, rays along every row's normal and
   along random directions; the first hyperplane a ray meets, at a point whose slack to every
   other row exceeds ``facet_tol``, carries a facet (the point is the witness);
2. *vertex screening* (2 <= k <= ``SCREEN_MAX_K``, bounded domains): the vertices of the
   polytope cut out by the certified facets and the domain (qhull); a row that every vertex
   satisfies strictly is no facet (that polytope contains the region); a ray toward a vertex
   that some row cuts off meets a facet not yet known (certified as in 1); repeated while it
   finds new facets;
3. a HiGHS LP per row still undecided: the largest ball around a point of the hyperplane that
   the other rows allow (facet iff its radius exceeds ``facet_tol``).

May import: numpy, scipy.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SCREEN_MAX_K = 8  # vertex screening up to this dimension (qhull grows fast beyond)
DUP_COS = 1e-12  # rows whose unit normals agree to this (1 - cos) ...
DUP_REL = 1e-9  # ... and whose offsets agree to this relative slack are one hyperplane
N_RANDOM_RAYS = 8  # random rays besides the 2k axis-like ones and the normals
MAX_SCREEN_ROUNDS = 8  # rounds of vertex screening and rays toward offending vertices


@dataclass
class FacetStats:
    """Counters over many regions (how each facet question was decided)."""
    regions: int = 0
    rows: int = 0
    facets: int = 0
    by_ray: int = 0
    by_screen: int = 0
    lps: int = 0
    degenerate: int = 0
    extra: dict = field(default_factory=dict)

    def add(self, other):
        for name in ("regions", "rows", "facets", "by_ray", "by_screen", "lps", "degenerate"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _groups(H, s):
    """Group id of every row (the lowest row of the same hyperplane and side) and H H^T."""
    C = H @ H.T
    scale = np.maximum(s[:, None], s[None, :])
    same = (C >= 1.0 - DUP_COS) & (np.abs(s[:, None] - s[None, :]) <= DUP_REL * (scale + 1e-300))
    gid = np.argmax(same, axis=1)  # first True of each row: the lowest row of its group
    return gid, C


def _ray_hits(H, s, gid, D, facet_tol):
    """Shoot rays ``u0 + t v`` (columns of D); returns (row hit, hit point offset t, margin) for
    every ray whose first hit is certified."""
    Q = H @ D  # (m, R)
    with np.errstate(divide="ignore", invalid="ignore"):
        T = np.where(Q > 1e-14, s[:, None] / Q, np.inf)
    T[gid != np.arange(len(gid))] = np.inf  # a group is hit through its lowest row
    first = np.argmin(T, axis=0)
    t = T[first, np.arange(T.shape[1])]
    ok = np.isfinite(t)
    S = s[:, None] - t[None, :] * Q
    S[gid[:, None] == gid[first][None, :]] = np.inf  # the hit hyperplane itself (and its group)
    margin = S.min(axis=0) if len(S) else np.full(T.shape[1], np.inf)
    ok &= margin > facet_tol
    return first[ok], t[ok], margin[ok], np.flatnonzero(ok)


def _vertices(H, g, u0):
    """Vertices of the bounded polytope {H u <= g} around the interior point u0 (qhull), or None."""
    from scipy.spatial import HalfspaceIntersection, QhullError

    try:
        V = HalfspaceIntersection(np.hstack([H, -g[:, None]]), u0).intersections
    except (QhullError, ValueError):
        return None
    return V if np.all(np.isfinite(V)) else None


def _screen(H, g, s, gid, u0, n_neuron_rows, facet_tol, best, undecided, st, on_domain):
    """Vertex screening with rays toward offending vertices (Clarkson's idea): the polytope of
    the facets known so far and the domain contains the region; its vertices that some
    undecided row cuts off show where a facet is still missing, and a ray from u0 toward such a
    vertex meets one.  Repeats while rays certify new facets; returns the rows still undecided
    (for the LPs).  Adds to ``best``."""
    m = len(H)
    for _ in range(MAX_SCREEN_ROUNDS):
        cert = np.zeros(m, bool)
        cert[list(best)] = True
        cert[n_neuron_rows:] = True
        V = _vertices(H[cert], g[cert], u0)
        if V is None:
            return undecided
        ext = float(np.abs(V - u0).max()) + facet_tol
        cut = V @ H[undecided].T - np.asarray(g)[undecided] >= -1e-9 * ext  # (v, undecided)
        still = cut.any(axis=0)
        st.by_screen += int((~still).sum())
        undecided = [j for j, keep in zip(undecided, still) if keep]
        if not undecided:
            return undecided
        D = (V[cut.any(axis=1)] - u0).T
        D = D / np.maximum(np.linalg.norm(D, axis=0), 1e-300)
        rows, t, margin, cols = _ray_hits(H, s, gid, D, facet_tol)
        new = 0
        for r, tt, mg, col in zip(rows.tolist(), t, margin, cols):
            if r < n_neuron_rows and not on_domain[r] and r not in best:
                best[r] = (u0 + tt * D[:, col], float(mg))
                new += 1
        st.by_ray += new
        undecided = [j for j in undecided if j not in best]
        if not new or not undecided:
            return undecided
    return undecided


def facet_lp(H, g, j, members, cap):
    """Largest radius t of a ball around a point p of row j's hyperplane that the rows outside
    ``members`` (j's group) allow.  Returns (t, p); t = -inf when the hyperplane misses the
    region."""
    from scipy.optimize import linprog

    k = H.shape[1]
    keep = np.ones(len(H), bool)
    keep[members] = False
    A_ub = np.hstack([H[keep], np.ones((int(keep.sum()), 1))])
    cost = np.zeros(k + 1)
    cost[-1] = -1.0
    res = linprog(cost, A_ub=A_ub, b_ub=g[keep], A_eq=np.append(H[j], 0.0)[None, :], b_eq=[g[j]],
                  bounds=[(None, None)] * k + [(None, cap)], method="highs")
    if res.status != 0:
        return -np.inf, None
    return float(res.x[-1]), res.x[:k]


def region_facets(H, g, u0, n_neuron_rows, facet_tol, rng, stats=None, screen=True):
    """Facets of the region ``{H u <= g}`` carried by its first ``n_neuron_rows`` rows.

    Returns a list of ``(row, members, p, margin)``: the group's lowest row, all rows of the
    group, a witness point p in the facet and its margin (every other row has slack > margin at
    p).  ``u0``: a point strictly inside.  ``rng``: random rays.  ``screen``: vertex screening
    allowed (the domain rows bound the region)."""
    st = stats if stats is not None else FacetStats()
    m, k = H.shape
    st.regions += 1
    s = g - H @ u0
    s = np.maximum(s, 0.0)
    gid, C = _groups(H, s)
    reps = np.flatnonzero((gid == np.arange(m)) & (np.arange(m) < n_neuron_rows))
    on_domain = np.zeros(m, bool)
    on_domain[gid[n_neuron_rows:]] = True  # groups that contain a domain row
    reps = reps[~on_domain[reps]]
    st.rows += len(reps)
    if len(reps) == 0:
        return []
    R = rng.normal(size=(k, N_RANDOM_RAYS + 2 * k))
    R /= np.linalg.norm(R, axis=0)
    D = np.hstack([H[reps].T, R])
    rows, t, margin, cols = _ray_hits(H, s, gid, D, facet_tol)
    best = {}
    for r, tt, mg, col in zip(rows.tolist(), t, margin, cols):
        if r < n_neuron_rows and not on_domain[r] and (r not in best or mg > best[r][1]):
            best[r] = (u0 + tt * D[:, col], float(mg))
    st.by_ray += len(best)
    undecided = [j for j in reps.tolist() if j not in best]
    if undecided and screen and 2 <= k <= SCREEN_MAX_K:
        undecided = _screen(H, g, s, gid, u0, n_neuron_rows, facet_tol, best, undecided, st, on_domain)
    cap = float(s.max()) if len(s) else 1.0
    for j in undecided:
        members = np.flatnonzero(gid == j)
        st.lps += 1
        rad, p = facet_lp(H, g, j, members, cap)
        if rad > facet_tol:
            best[j] = (p, rad)
    out = []
    for j in sorted(best):
        members = np.flatnonzero(gid == j)
        if len(members) > 1:
            st.degenerate += 1
        out.append((j, members, best[j][0], best[j][1]))
    st.facets += len(out)
    return out
