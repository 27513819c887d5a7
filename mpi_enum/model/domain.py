"""Input domains (CONTRACT §2) and their reduced coordinates (pure data: no file I/O, no MPI).

Every domain is described in its own coordinates ``y`` in R^k with

    x = x0 + E @ y          (input coordinates, E of shape (d, k))
    G @ y <= h              (the domain's own constraints; rows of G have unit norm)

The engine works in ``y`` only.  The map is chosen so that the domain is *normalised*: a box
becomes [-1, 1]^k, a polytope, a --plane parallelogram and a --line segment have Chebyshev radius
1 around y = 0.  The tolerance ``tol`` is therefore relative to the domain's size (scale-free);
the ``/regions/radius`` written to the result is converted back to input units with
``radius_x = radius_y * rscale`` (``rscale`` = smallest singular value of E, so a ball of that
radius in input units around the point stays in the region; for slices the ball is taken
inside the slice's affine hull).

A degenerate box (some lo == hi, e.g. ACAS Xu property 4) fixes those coordinates and becomes a
lower-dimensional box over the free ones.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ..errors import InputError


@dataclass
class Domain:
    kind: str
    d: int
    k: int
    x0: np.ndarray
    E: np.ndarray
    G: np.ndarray  # (m, k) unit-norm rows
    h: np.ndarray  # (m,)
    rscale: float
    y_lo: np.ndarray | None = None  # a bounding box of the domain in y (None: unbounded)
    y_hi: np.ndarray | None = None
    spec: dict = field(default_factory=dict)

    @property
    def bounded(self) -> bool:
        return self.y_lo is not None

    def to_x(self, Y):
        """Input coordinates of the rows of Y (n, k) (or of one y (k,)): x0 + E y.  A box's E
        (scaled, possibly a selection of free coordinates) is applied coordinate-wise, not as a
        d x k product (at d = 784 that product cost as much as the search)."""
        Y = np.asarray(Y, dtype=np.float64)
        sel = self._selection
        if sel is None:
            return self.x0 + Y @ self.E.T
        rows, scale = sel
        X = np.empty(Y.shape[:-1] + (self.d,))
        X[...] = self.x0
        X[..., rows] += Y * scale
        return X

    @cached_property
    def _selection(self):
        """(rows, scale) when each column of E has one nonzero, in distinct rows (boxes); else None."""
        E = np.asarray(self.E)
        if E.ndim != 2 or E.shape[1] == 0:
            return None
        nz = E != 0
        if not np.all(nz.sum(axis=0) == 1) or np.any(nz.sum(axis=1) > 1):
            return None
        rows = np.argmax(nz, axis=0)
        return rows, E[rows, np.arange(E.shape[1])]

    def to_json(self) -> str:
        return json.dumps(self.spec, sort_keys=True)

    def measure(self):
        """k-dimensional volume of the domain in *input* units, or None if unbounded."""
        if not self.bounded:
            return None
        return float(_polytope_volume(self.G, self.h) * abs(np.sqrt(np.linalg.det(self.E.T @ self.E))))

    def sample(self, rng, n):
        """``n`` uniform points of the domain, in input coordinates (Gaussian if unbounded)."""
        if not self.bounded:
            return self.to_x(rng.normal(size=(n, self.k)) * 3.0)
        out = []
        need = n
        while need > 0:
            Y = rng.uniform(self.y_lo, self.y_hi, size=(max(2 * need, 64), self.k))
            ok = np.all(Y @ self.G.T <= self.h, axis=1) if self.G.size else np.ones(len(Y), bool)
            out.append(Y[ok][:need])
            need -= int(ok.sum())
        return self.to_x(np.concatenate(out)[:n])


def _normalise_rows(G, h):
    G = np.asarray(G, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    nrm = np.linalg.norm(G, axis=1)
    keep = nrm > 0
    if np.any(~keep & (h < 0)):
        raise InputError("domain: a constraint 0 <= b with b < 0 makes the domain empty")
    return G[keep] / nrm[keep, None], h[keep] / nrm[keep]


def _chebyshev(G, h, cap=None):
    """Chebyshev centre and radius of {G y <= h} (scipy; used at setup only)."""
    from scipy.optimize import linprog

    k = G.shape[1]
    nrm = np.linalg.norm(G, axis=1)
    A = np.hstack([G, nrm[:, None]])
    c = np.zeros(k + 1)
    c[-1] = -1.0
    bounds = [(None, None)] * k + [(None, cap)]
    res = linprog(c, A_ub=A, b_ub=h, bounds=bounds, method="highs")
    if res.status == 3:
        return None, np.inf
    if res.status != 0:
        return None, -np.inf
    return res.x[:k], float(res.x[k])


def _bbox(G, h):
    from scipy.optimize import linprog

    k = G.shape[1]
    lo, hi = np.empty(k), np.empty(k)
    for i in range(k):
        for sgn, arr in ((1.0, lo), (-1.0, hi)):
            c = np.zeros(k)
            c[i] = sgn
            res = linprog(c, A_ub=G, b_ub=h, bounds=[(None, None)] * k, method="highs")
            if res.status != 0:
                return None, None
            arr[i] = res.x[i]
    return lo, hi


def _polytope_volume(G, h):
    """Volume of a bounded polytope {G y <= h} in k <= 3 (vertex enumeration + hull)."""
    from itertools import combinations

    k = G.shape[1]
    verts = []
    for idx in combinations(range(len(G)), k):
        M = G[list(idx)]
        if abs(np.linalg.det(M)) < 1e-12:
            continue
        v = np.linalg.solve(M, h[list(idx)])
        if np.all(G @ v <= h + 1e-9):
            verts.append(v)
    verts = np.array(verts)
    if k == 1:
        return float(verts.max() - verts.min())
    from scipy.spatial import ConvexHull

    return float(ConvexHull(verts).volume)


def box_domain(lo, hi, spec=None):
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    d = lo.size
    if np.any(lo > hi):
        i = int(np.argmax(lo > hi))
        raise InputError(f"--box: lo > hi in coordinate {i} ({lo[i]} > {hi[i]}): the domain is empty")
    scale = np.maximum(1.0, np.maximum(np.abs(lo), np.abs(hi)))
    free = (hi - lo) > 1e-12 * scale
    k = int(free.sum())
    if k == 0:
        raise InputError("--box: every coordinate is fixed (lo == hi): the domain has no interior")
    hw = (hi - lo) / 2.0
    x0 = np.where(free, (lo + hi) / 2.0, lo)
    E = np.zeros((d, k))
    E[np.flatnonzero(free), np.arange(k)] = hw[free]
    G = np.vstack([np.eye(k), -np.eye(k)])
    h = np.ones(2 * k)
    spec = dict(spec or {"kind": "box"})
    spec.update(lo=lo.tolist(), hi=hi.tolist(), fixed=np.flatnonzero(~free).tolist())
    return Domain("box", d, k, x0, E, G, h, float(hw[free].min()), -np.ones(k), np.ones(k), spec)


def polytope_domain(A, b, d, path="--polytope"):
    A = np.asarray(A, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if A.ndim != 2 or A.shape[1] != d or b.shape != (A.shape[0],):
        raise InputError(f"{path}: A must have shape (m, {d}) and b shape (m,), got {A.shape} and {b.shape}")
    if not (np.all(np.isfinite(A)) and np.all(np.isfinite(b))):
        raise InputError(f"{path}: A or b contain NaN or Inf")
    try:
        G, h = _normalise_rows(A, b)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    if len(G) == 0:
        raise InputError(f"{path}: no non-zero constraint rows")
    xc, r = _chebyshev(G, h, cap=1e12)
    if xc is None or not (r > 0):
        raise InputError(f"{path}: the polytope is empty or has no interior")
    if r >= 1e12:
        # it holds arbitrarily large balls (unbounded): unit scale as for --unbounded, otherwise the
        # relative tol would be ~1e12 * tol in input units and drop every ordinary region
        xc, r = _chebyshev(G, h, cap=1.0)
    s = min(r, 1e12)
    # y = (x - xc) / s
    Gy, hy = _normalise_rows(G * s, h - G @ xc)
    lo, hi = _bbox(Gy, hy)
    spec = {"kind": "polytope", "file": path, "A": A.tolist(), "b": b.tolist()}
    return Domain("polytope", d, d, xc, s * np.eye(d), Gy, hy, float(s), lo, hi, spec)


def _slice_points(P, d, path, option, rows):
    """The points of --plane / --line as a float array of shape (len(rows), d), or InputError."""
    P = np.asarray(P, dtype=np.float64)
    if P.shape != (len(rows), d):
        raise InputError(f"{path}: {option} needs an array of shape ({len(rows)}, {d}) (rows {', '.join(rows)}), "
                         f"got {P.shape}")
    if not np.all(np.isfinite(P)):
        raise InputError(f"{path}: points contain NaN or Inf")
    return P


def plane_domain(P, d, path="--plane"):
    P = _slice_points(P, d, path, "--plane", ("x0", "x1", "x2"))
    x0, u, v = P[0], P[1] - P[0], P[2] - P[0]
    UV = np.stack([u, v], axis=1)
    Q, R = np.linalg.qr(UV)
    if abs(R[0, 0] * R[1, 1]) <= 1e-12 * max(1.0, np.linalg.norm(u) * np.linalg.norm(v)):
        raise InputError(f"{path}: the three points are collinear: the plane slice is empty")
    Pinv = np.linalg.inv(R)  # (s, t) = Pinv @ Q^T (x - x0)
    # centre, and Chebyshev radius in Q coordinates
    S = float(min(0.5 / np.linalg.norm(Pinv[i]) for i in range(2)))
    G = np.vstack([S * Pinv, -S * Pinv])
    h = np.full(4, 0.5)
    G, h = _normalise_rows(G, h)
    xc = x0 + (u + v) / 2.0
    corners = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=float) - 0.5
    Yc = (corners @ R.T) / S  # Q^T(x - xc) / S
    spec = {"kind": "plane", "file": path, "points": P.tolist()}
    return Domain("plane", d, 2, xc, S * Q, G, h, S, Yc.min(axis=0), Yc.max(axis=0), spec)


def line_domain(P, d, path="--line"):
    P = _slice_points(P, d, path, "--line", ("x0", "x1"))
    u = P[1] - P[0]
    L = float(np.linalg.norm(u))
    if L <= 1e-12 * max(1.0, float(np.abs(P).max())):
        raise InputError(f"{path}: the two points coincide: the segment is empty")
    S = L / 2.0
    spec = {"kind": "line", "file": path, "points": P.tolist()}
    G = np.array([[1.0], [-1.0]])
    return Domain("line", d, 1, (P[0] + P[1]) / 2.0, (u / L)[:, None] * S, G, np.ones(2), S,
                  -np.ones(1), np.ones(1), spec)


def unbounded_domain(d):
    return Domain("unbounded", d, d, np.zeros(d), np.eye(d), np.zeros((0, d)), np.zeros(0), 1.0,
                  None, None, {"kind": "unbounded"})
