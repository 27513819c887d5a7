"""Independent oracles for the region graph: nothing here imports mpi_enum.

Regions are rebuilt from the raw weights with :mod:`conftest`'s forward pass and half-spaces
(rows ``n . x + v0 <= 0``); polygons and volumes come from scipy's qhull; facets from this
module's own linprog; adjacency from shared polygon edges (2-D) or from stepping across random
facet points (any d); linear regions from a plain union-find.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linprog
from scipy.spatial import ConvexHull, HalfspaceIntersection

from conftest import box_halfspaces, forward, patterns_of, region_affine


def region_rows(Ws, bs, bits, lo, hi):
    """(Hn, H0, neuron of each row or -1 for the box) with unit rows."""
    A, c = region_affine(Ws, bs, bits)
    sgn = np.where(np.asarray(bits).astype(bool), -1.0, 1.0)
    Hn, H0 = A * sgn[:, None], c * sgn
    nrm = np.linalg.norm(Hn, axis=1)
    keep = nrm > 1e-12 * max(1.0, nrm.max())
    Bn, B0 = box_halfspaces(lo, hi)
    Hn = np.vstack([Hn[keep] / nrm[keep, None], Bn])
    H0 = np.concatenate([H0[keep] / nrm[keep], B0])
    who = np.concatenate([np.flatnonzero(keep), -np.ones(len(Bn), int)])
    return Hn, H0, who


def polygon(Hn, H0, x0):
    V = HalfspaceIntersection(np.hstack([Hn, H0[:, None]]), np.asarray(x0, float)).intersections
    c = V.mean(axis=0)
    V = V[np.argsort(np.arctan2(V[:, 1] - c[1], V[:, 0] - c[0]))]
    keep = np.ones(len(V), bool)
    for i in range(len(V)):  # drop repeated vertices
        if np.linalg.norm(V[i] - V[i - 1]) < 1e-12:
            keep[i] = False
    return V[keep]


def shared_length(P, Q, tol=1e-9):
    """Length of the common part of the boundaries of two convex polygons."""
    best = 0.0
    for a, b in zip(P, np.roll(P, -1, axis=0)):
        d = b - a
        L = np.linalg.norm(d)
        if L < tol:
            continue
        u = d / L
        nrm = np.array([-u[1], u[0]])
        for c, e in zip(Q, np.roll(Q, -1, axis=0)):
            if abs((c - a) @ nrm) > tol or abs((e - a) @ nrm) > tol:
                continue
            s0, s1 = sorted([(c - a) @ u, (e - a) @ u])
            best = max(best, min(L, s1) - max(0.0, s0))
    return best


def polygon_pairs(polys, min_len=1e-7):
    """Pairs (i, j), i < j, of polygons sharing a boundary piece longer than ``min_len``."""
    lo = np.array([P.min(axis=0) for P in polys])
    hi = np.array([P.max(axis=0) for P in polys])
    out = set()
    for i in range(len(polys)):
        for j in range(i + 1, len(polys)):
            if np.any(lo[i] > hi[j] + 1e-9) or np.any(lo[j] > hi[i] + 1e-9):
                continue
            if shared_length(polys[i], polys[j]) > min_len:
                out.add((i, j))
    return out


def euler_vertices_and_boundary_edges(polys, lo, hi, tol=1e-9):
    """V: distinct points where >= 3 faces meet (the outside counts as a face) or box corners;
    E_b: the pieces of the box boundary between consecutive such points."""
    pts = np.concatenate(polys)
    uniq = []
    for p in pts:
        if not any(np.linalg.norm(p - q) < 1e-8 for q in uniq):
            uniq.append(p)
    verts = []
    for p in uniq:
        faces = 0
        for P in polys:
            for a, b in zip(P, np.roll(P, -1, axis=0)):
                d = b - a
                t = np.clip((p - a) @ d / max(d @ d, 1e-300), 0, 1)
                if np.linalg.norm(a + t * d - p) < tol * 10:
                    faces += 1
                    break
        on_box = np.any(np.abs(p - lo) < 1e-8) or np.any(np.abs(p - hi) < 1e-8)
        corner = np.all((np.abs(p - lo) < 1e-8) | (np.abs(p - hi) < 1e-8))
        if faces + on_box >= 3 or corner:
            verts.append(p)
    n_box = sum(1 for p in verts if np.any(np.abs(p - lo) < 1e-8) or np.any(np.abs(p - hi) < 1e-8))
    return len(verts), n_box  # on a closed boundary loop: as many pieces as points


def region_polygons(Ws, bs, bits, points, lo, hi):
    return [polygon(*region_rows(Ws, bs, b, lo, hi)[:2], x) for b, x in zip(bits, points)]


def facet_point(Hn, H0, j, cap=1.0):
    """Chebyshev point of row j's hyperplane among the other rows: (radius, point)."""
    k = Hn.shape[1]
    others = np.ones(len(Hn), bool)
    others[j] = False
    same = (np.abs(Hn @ Hn[j] - 1) < 1e-10) & (np.abs(H0 - H0[j]) < 1e-9)
    others &= ~same
    r = linprog(np.r_[np.zeros(k), -1.0], A_ub=np.hstack([Hn[others], np.ones((others.sum(), 1))]),
                b_ub=-H0[others], A_eq=np.r_[Hn[j], 0.0][None], b_eq=[-H0[j]],
                bounds=[(None, None)] * k + [(None, cap)], method="highs")
    if r.status != 0:
        return -np.inf, None
    return r.x[-1], r.x[:k]


def sampled_neighbours(Ws, bs, bits, lo, hi, rng, min_radius=1e-5):
    """Pairs {(i, j)} found by stepping across a random point of every facet (radius >
    ``min_radius``) of every stored region, with the neuron; and every facet's pair."""
    index = {bytes(b): i for i, b in enumerate(np.asarray(bits, np.uint8))}
    pairs = {}
    for i, b in enumerate(bits):
        Hn, H0, who = region_rows(Ws, bs, b, lo, hi)
        for j in np.flatnonzero(who >= 0):
            rad, p = facet_point(Hn, H0, j)
            if not rad > min_radius:
                continue
            v = rng.normal(size=len(p))
            v -= (v @ Hn[j]) * Hn[j]
            v *= 0.5 * rad * rng.uniform() / max(np.linalg.norm(v), 1e-300)
            q = p + v
            eps = 1e-3 * rad
            inside, outside = patterns_of(Ws, bs, np.stack([q - eps * Hn[j], q + eps * Hn[j]]))
            assert bytes(inside) == bytes(np.asarray(b, np.uint8)), "stepping inside left the region"
            nb = index.get(bytes(outside))
            if nb is not None:
                pairs[(min(i, nb), max(i, nb))] = int(who[j])
    return pairs


def affine_output(Ws, bs, bits):
    """The network's output map on a region: (M (n_out, d), m)."""
    bits = np.asarray(bits, float)
    d = Ws[0].shape[1]
    M, m, off = np.eye(d), np.zeros(d), 0
    for W, b in zip(Ws[:-1], bs[:-1]):
        mask = bits[off:off + W.shape[0]]
        off += W.shape[0]
        M, m = (W @ M) * mask[:, None], (W @ m + b) * mask
    return Ws[-1] @ M, Ws[-1] @ m + bs[-1]


def brute_linear_regions(Ws, bs, bits, pairs, rtol=1e-9):
    """Union-find over ``pairs`` whose output maps are equal; returns the partition as a set of
    frozensets of region indices."""
    maps = [np.concatenate([M.ravel(), m]) for M, m in (affine_output(Ws, bs, b) for b in bits)]
    parent = list(range(len(bits)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in pairs:
        scale = max(np.abs(maps[i]).max(), np.abs(maps[j]).max(), 1e-300)
        if np.abs(maps[i] - maps[j]).max() <= rtol * scale:
            parent[find(i)] = find(j)
    groups = {}
    for i in range(len(bits)):
        groups.setdefault(find(i), set()).add(i)
    return {frozenset(g) for g in groups.values()}


def box_volume(Ws, bs, bits, points, lo, hi):
    total = 0.0
    for b, x in zip(bits, points):
        Hn, H0, _ = region_rows(Ws, bs, b, lo, hi)
        total += ConvexHull(HalfspaceIntersection(np.hstack([Hn, H0[:, None]]), x).intersections).volume
    return total


def predicted(Ws, bs, X):
    out = forward(Ws, bs, X)
    return (out[:, 0] > 0).astype(int) if out.shape[1] == 1 else np.argmax(out, axis=1)
