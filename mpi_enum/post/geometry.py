"""Geometry shared by verify, analyze and plot: orthonormal charts, per-region affine maps,
half-spaces, polygons and pattern-prefix groups.

May import: :mod:`mpi_enum.model`, numpy.
"""
from __future__ import annotations

from math import comb

import numpy as np



class Chart:
    """Orthonormal coordinates ``u`` of the domain: ``x = x0 + Q u``, ``u = R y``.

    ``Gu u <= hu`` is the domain (unit-norm rows).  Lengths and volumes in ``u`` are in input
    units (Q has orthonormal columns), so a region's radius in input units is a radius in ``u``.
    """

    def __init__(self, domain):
        self.domain = domain
        self.x0 = np.asarray(domain.x0, float)
        E = np.asarray(domain.E, float)
        self.Q, self.R = np.linalg.qr(E)
        # make the diagonal of R positive so that u keeps y's orientation
        sgn = np.where(np.diag(self.R) < 0, -1.0, 1.0)
        self.Q, self.R = self.Q * sgn, self.R * sgn[:, None]
        self.Rinv = np.linalg.inv(self.R)
        G = np.asarray(domain.G, float).reshape(-1, E.shape[1]) @ self.Rinv
        nrm = np.linalg.norm(G, axis=1)
        nrm = np.where(nrm > 0, nrm, 1.0)
        self.Gu = G / nrm[:, None]
        self.hu = np.asarray(domain.h, float) / nrm
        self.k = E.shape[1]

    def to_u(self, X):
        return (np.asarray(X, float) - self.x0) @ self.Q

    def to_x(self, U):
        return self.x0 + np.asarray(U, float) @ self.Q.T

    def slice_residual(self, X):
        """Distance of each point from the domain's affine hull (0 for full-dimensional domains)."""
        D = np.asarray(X, float) - self.x0
        return np.linalg.norm(D - (D @ self.Q) @ self.Q.T, axis=1)


def region_maps(net, chart, bits, with_output=False):
    """Affine pre-activation maps on a batch of regions, in ``u`` coordinates, of the network with
    unit hidden rows (:meth:`mpi_enum.model.network.Network.normalised`: the same regions and
    patterns, pre-activations divided by positive per-neuron factors).

    ``bits`` (n, N) 0/1 patterns (the masks of the hidden layers).  Returns ``A`` (n, N, k) and
    ``c`` (n, N): neuron j's pre-activation on region i is ``A[i, j] @ u + c[i, j]``.  With
    ``with_output`` also the output layer's map ``(Ao (n, n_out, k), co (n, n_out))``.
    """
    bits = np.asarray(bits)
    n = len(bits)
    Ws, bs = net.normalised().weights, net.normalised().biases  # unit rows: scale-free thresholds
    M = np.broadcast_to(Ws[0] @ chart.Q, (n,) + (Ws[0].shape[0], chart.k))
    m = np.broadcast_to(Ws[0] @ chart.x0 + bs[0], (n, Ws[0].shape[0]))
    As, cs = [M], [m]
    off = 0
    for l in range(1, len(Ws)):
        w = Ws[l - 1].shape[0]
        mask = bits[:, off:off + w].astype(np.float64)
        off += w
        Mm = M * mask[:, :, None]
        mm = m * mask
        # one large GEMM instead of n small ones: (w2, w1) @ (w1, n*k)
        w1, k = Mm.shape[1], Mm.shape[2]
        M = (Ws[l] @ Mm.transpose(1, 0, 2).reshape(w1, n * k)).reshape(-1, n, k).transpose(1, 0, 2)
        m = mm @ Ws[l].T + bs[l]
        if l < len(Ws) - 1:
            As.append(M)
            cs.append(m)
    A = np.concatenate(As, axis=1)
    c = np.concatenate(cs, axis=1)
    if with_output:
        return A, c, M, m
    return A, c


def layer_ranks(net, chart, bits, A):
    """Singular values of the masked affine map after each hidden layer: list of (n, min(w, k))."""
    out = []
    off = 0
    for w in net.hidden_widths:
        mask = bits[:, off:off + w].astype(np.float64)
        M = A[:, off:off + w, :] * mask[:, :, None]
        out.append(np.linalg.svd(M, compute_uv=False))
        off += w
    return out


def region_halfspaces(A, c, bits, chart, i, zero_tol=1e-13, with_index=False):
    """Half-spaces ``H u <= g`` (unit-norm rows) of region i: its neurons' sides and the domain.

    Constant neurons (gradient below ``zero_tol`` of the region's largest) carry no row.  With
    ``with_index`` also the neurons (layer-major indices) of the first rows, one per row; the
    domain's rows follow them."""
    a = A[i]
    s = np.where(np.asarray(bits[i]) > 0, -1.0, 1.0)  # active: -(a u + c) <= 0; inactive: a u + c <= 0
    nrm = np.linalg.norm(a, axis=1)
    scale = max(float(nrm.max()) if nrm.size else 0.0, 1e-300)
    keep = nrm > zero_tol * scale
    H = (s[keep, None] * a[keep]) / nrm[keep, None]
    g = -(s[keep] * c[i][keep]) / nrm[keep]
    if with_index:
        return np.vstack([H, chart.Gu]), np.concatenate([g, chart.hu]), np.flatnonzero(keep)
    return np.vstack([H, chart.Gu]), np.concatenate([g, chart.hu])


def clip_polygon(V, a, b, eps=0.0):
    """Clip a convex polygon (vertices V (m, 2), counter-clockwise) by ``a . u <= b``."""
    if len(V) == 0:
        return V
    s = V @ a - b
    if np.all(s <= eps):
        return V
    if np.all(s > -eps):
        return V[:0]
    out = []
    m = len(V)
    for j in range(m):
        p, q = V[j], V[(j + 1) % m]
        sp, sq = s[j], s[(j + 1) % m]
        if sp <= 0:
            out.append(p)
        if (sp < 0 < sq) or (sq < 0 < sp):
            t = sp / (sp - sq)
            out.append(p + t * (q - p))
    return np.array(out).reshape(-1, 2)


def convex_polygon(H, g, box, start=None):
    """Vertices of ``{H u <= g}`` inside the rectangle ``box = (lo, hi)`` (2-D, counter-clockwise).

    Clips by the most violated remaining half-plane first, so redundant rows cost one matrix
    product rather than one clip each.
    """
    lo, hi = box
    V = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]], float) if start is None else start
    scale = max(1.0, float(np.abs(V).max()))
    eps = 1e-13 * scale
    rem = np.arange(len(H))
    while len(V) >= 3 and len(rem):
        S = V @ H[rem].T - g[rem]  # (m, r)
        worst = S.max(axis=0)
        cut = worst > eps
        if not np.any(cut):
            break
        rem = rem[cut]
        j = int(np.argmax(worst[cut]))
        V = clip_polygon(V, H[rem[j]], g[rem[j]])
        rem = np.delete(rem, j)
    return V if len(V) >= 3 else V[:0]


def polygon_area(V):
    if len(V) < 3:
        return 0.0
    x, y = V[:, 0], V[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def domain_box_u(chart, fallback_points=None, pad=0.25):
    """A bounding box of the domain in u (for unbounded domains: around ``fallback_points``)."""
    from ..model.domain import _bbox

    if len(chart.Gu):
        lo, hi = _bbox(chart.Gu, chart.hu)
        if lo is not None:
            return lo, hi
    P = np.asarray(fallback_points if fallback_points is not None else np.zeros((1, chart.k)), float)
    lo, hi = P.min(axis=0), P.max(axis=0)
    ext = np.maximum(hi - lo, 1.0)
    return lo - pad * ext, hi + pad * ext


def prefix_groups(bits, n_bits):
    """Group ids (n,) of the rows of ``bits[:, :n_bits]`` and the number of groups."""
    if n_bits == 0 or len(bits) == 0:
        return np.zeros(len(bits), np.int64), (1 if len(bits) else 0)
    pk = np.packbits(bits[:, :n_bits], axis=1)
    v = np.ascontiguousarray(pk).view(np.dtype((np.void, pk.shape[1]))).ravel()
    _, inv = np.unique(v, return_inverse=True)
    inv = inv.ravel()
    return inv.astype(np.int64), int(inv.max()) + 1


def arrangement_bound(n_planes, r):
    """Regions of an arrangement of ``n_planes`` hyperplanes in general position in R^r."""
    return int(sum(comb(int(n_planes), i) for i in range(0, int(r) + 1)))
