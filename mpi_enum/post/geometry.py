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


def forward_abs(net, X):
    """Pre-activations (n, N) of the gated neurons and a bound on their rounding scale
    (|W| |h| + |b|): the forward pass ``verify`` checks patterns and margins with.  A max group's
    member has its margin over the largest other member instead (> 0 iff it is the strict
    maximum: the sign is its bit, as a ReLU's pre-activation), with the scales of both."""
    X = np.atleast_2d(X)
    zs, sc = [], []
    h, ha = X, np.abs(X)
    for l, (W, b) in enumerate(zip(net.weights[:-1], net.biases[:-1])):
        z = h @ W.T + b
        za = ha @ np.abs(W).T + np.abs(b)
        h = net.activate(l, z)
        ha = np.abs(h)
        if net.groups is not None:  # a max group's members: their margins over the others' maximum
            za = za.copy()
            for idx in net.group_members(l):
                za[:, idx] += za[:, idx].max(axis=1, keepdims=True)
            z = net._margins(l, z)
        zs.append(z)
        sc.append(za)
    Z, S = np.concatenate(zs, axis=1), np.concatenate(sc, axis=1)
    if net.linear is not None:  # linear neurons have no pattern bit
        g = net.gated_index()
        Z, S = Z[:, g], S[:, g]
    return Z, S


def region_maps(net, chart, bits, with_output=False, all_neurons=False):
    """Affine pre-activation maps on a batch of regions, in ``u`` coordinates, of the network with
    unit hidden rows (:meth:`mpi_enum.model.network.Network.normalised`: the same regions and
    patterns, pre-activations divided by positive per-neuron factors).

    ``bits`` (n, N) 0/1 patterns (one bit per gated neuron; an inactive neuron's output is its
    slope times its pre-activation: 0 for ReLU; linear neurons pass theirs on).  Returns ``A``
    (n, N, k) and ``c`` (n, N): gated neuron j's pre-activation on region i is
    ``A[i, j] @ u + c[i, j]`` (with ``all_neurons``: every hidden neuron's, linear ones too).
    With ``with_output`` also the output layer's map ``(Ao (n, n_out, k), co (n, n_out))``.

    The maps are computed and held coordinate-major, (k, n, N) in memory, so that each layer is
    one GEMM ``(k n, w1) @ (w1, w2)`` without copies; ``A`` is that array seen as (n, N, k)
    (``np.moveaxis(A, 2, 0)`` gives the contiguous (k, n, N) array back, as :func:`rank_agreement`
    does).
    """
    bits = np.asarray(bits)
    n = len(bits)
    k = chart.k
    Ws, bs = net.normalised().weights, net.normalised().biases  # unit rows: scale-free thresholds
    relu = getattr(net, "is_relu", True)
    gates = bits.astype(np.float64) if relu else net.gate_factors(bits)
    W0Q = Ws[0] @ chart.Q  # (w0, k)
    M = np.broadcast_to(W0Q.T[:, None, :], (k, n, W0Q.shape[0]))
    m = np.broadcast_to(Ws[0] @ chart.x0 + bs[0], (n, Ws[0].shape[0]))
    As, cs = [M], [m]
    off = 0
    for l in range(1, len(Ws)):
        w = Ws[l - 1].shape[0]
        mask = gates[:, off:off + w]
        off += w
        Mm = M * mask[None, :, :]
        M = (Mm.reshape(k * n, w) @ Ws[l].T).reshape(k, n, -1)
        m = (m * mask) @ Ws[l].T + bs[l]
        if l < len(Ws) - 1:
            As.append(M)
            cs.append(m)
    A = np.concatenate(As, axis=2)  # (k, n, N)
    c = np.concatenate(cs, axis=1)
    if not all_neurons and getattr(net, "linear", None) is not None:
        g = net.gated_index()
        A, c = A[:, :, g], c[:, g]
    if not all_neurons and getattr(net, "groups", None) is not None:
        A, c = group_comparisons(net, np.moveaxis(A, 0, 2), c, bits)
        A = np.moveaxis(A, 2, 0)
    if with_output:
        return np.moveaxis(A, 0, 2), c, np.moveaxis(M, 0, 2), m
    return np.moveaxis(A, 0, 2), c


def group_comparisons(net, A, c, bits):
    """The maps (n, N, k), (n, N) of the gated neurons with each max group's members replaced by
    their comparisons with the group's selected member (its one-hot bit in ``bits``): member t
    becomes ``z_t - z_sel``, which is <= 0 on the region (as an inactive neuron's
    pre-activation; its bit is 0), and the selected member's own row becomes 0 (no side to keep).
    Half-spaces, margins and facets then read a max group as they read ReLU neurons."""
    spans = net.group_spans()
    if not len(spans):
        return A, c
    bits = np.asarray(bits)
    n = len(bits)
    A, c = np.array(A, copy=True), np.array(c, copy=True)
    pos = np.concatenate([np.arange(s, s + k) for s, k in spans])
    sel = np.concatenate([np.repeat((s + np.argmax(bits[:, s:s + k], axis=1))[:, None], k, axis=1)
                          for s, k in spans], axis=1)  # (n, members): the selected position
    rows = np.arange(n)[:, None]
    A[:, pos] = A[:, pos] - A[rows, sel]
    c[:, pos] = c[:, pos] - c[rows, sel]
    return A, c


RANK_HI, RANK_LO, RANK_ABS = 1e-13, 1e-6, 1e-9  # the rank rule of :func:`rank_agreement`
CHOL_MAX_Q = 8  # full ranks certified by a vectorised Cholesky up to this Gram size


def _cholesky_succeeds(G, tau):
    """Whether ``G[i] - tau[i] I`` (symmetric, q x q) has a Cholesky factor: every row at once."""
    n, q = G.shape[0], G.shape[1]
    Lf = np.zeros_like(G)
    ok = np.ones(n, bool)
    for j in range(q):
        d = G[:, j, j] - tau - np.einsum("ni,ni->n", Lf[:, j, :j], Lf[:, j, :j])
        ok &= d > 0
        r = np.sqrt(np.where(d > 0, d, 1.0))
        Lf[:, j, j] = r
        for i in range(j + 1, q):
            Lf[:, i, j] = (G[:, i, j] - np.einsum("ni,ni->n", Lf[:, i, :j], Lf[:, j, :j])) / r
    return ok


def _rank_counts(sv, big):
    """(lo, hi) rank counts of singular values ``sv`` (n, q), largest first, by the rank rule."""
    if sv.shape[1] == 0:
        z = np.zeros(len(sv), int)
        return z, z
    s0 = sv[:, :1]
    hi = np.sum(sv > RANK_HI * s0, axis=1)
    lo = np.sum((sv > RANK_LO * s0) & (sv > RANK_ABS * big), axis=1)
    return lo, hi


def rank_agreement(net, chart, bits, A, stored, widths=None):
    """Which stored affine ranks (n, L) agree with the singular values of the regions' masked maps.

    The rule: with singular values s_1 >= s_2 >= ... of layer l's masked map ``M`` and ``big`` the
    largest s_1 in the batch, a stored rank r agrees iff ``#{s_i > 1e-6 s_1 and s_i > 1e-9 big}
    <= r <= #{s_i > 1e-13 s_1}``.

    Decided from the eigenvalues of the small Gram matrix (``M^T M`` or ``M M^T``, q x q with
    q = min(w, k)) wherever they decide it beyond their error bound (forming the Gram matrix and
    ``eigvalsh`` together: at most ``(4 p q + q) eps s_1^2`` per eigenvalue, p = max(w, k)), and
    by the SVD of ``M`` only for the rows where they do not (nearly singular maps whose stored
    rank sits at the edge of the rule).  Returns a boolean array (n, L): True where it agrees.
    ``bits`` may be the output factors of every neuron (:meth:`Network.gate_factors`) with ``A``
    over every neuron (``region_maps(..., all_neurons=True)``) and ``widths`` the layer widths.
    """
    n = len(bits)
    widths = net.hidden_widths if widths is None else widths
    L = len(widths)
    ok = np.ones((n, L), bool)
    eps = np.finfo(np.float64).eps
    Ak = np.moveaxis(A, 2, 0)  # (k, n, N): contiguous for region_maps' A
    k = Ak.shape[0]
    off = 0
    for l, w in enumerate(widths):
        mask = bits[:, off:off + w].astype(np.float64)
        Mk = Ak[:, :, off:off + w] * mask[None, :, :]  # (k, n, w)
        off += w
        q, p = min(w, k), max(w, k)
        st = np.asarray(stored[:, l])
        if q == 0 or n == 0:
            ok[:, l] = st == 0
            continue
        M = np.moveaxis(Mk, 0, 2)  # (n, w, k) view
        if k <= w:  # G = M^T M, k x k: one dot product over the neurons per pair of coordinates
            G = np.empty((n, k, k))
            for a in range(k):
                for b in range(a, k):
                    G[:, a, b] = G[:, b, a] = np.einsum("nj,nj->n", Mk[a], Mk[b])
        else:
            M = np.ascontiguousarray(M)
            G = M @ np.swapaxes(M, 1, 2)
        # full stored ranks: a Cholesky factorisation of G - tau I that succeeds shows that every
        # eigenvalue exceeds the rule's upper threshold with its error bound (s_1^2 <= trace)
        G_all = G
        diag = np.diagonal(G, axis1=1, axis2=2)
        # the batch's s_1^2 ("big" squared) lies in [max diagonal entry, max trace], widened by the
        # Gram's error; the eigenvalues of the undecided rows narrow it below
        big_lo, big_hi = float(diag.max()), float(diag.sum(axis=1).max())
        rest = np.ones(n, bool)
        if q <= CHOL_MAX_Q:
            full = st == q
            if full.any():
                tr = np.trace(G[full], axis1=1, axis2=2)
                tau = (RANK_HI ** 2 + 2.0 * (4.0 * p * q + q) * eps + 8.0 * (q + 1) * eps) * tr
                good = _cholesky_succeeds(G[full], tau) & (tr > 0)
                rest[np.flatnonzero(full)[good]] = False
            if not rest.any():
                continue
            G, M, st = G[rest], M[rest], st[rest]
        e = np.linalg.eigvalsh(G)[:, ::-1]  # (n, q), largest first
        s0sq = np.maximum(e[:, :1], 0.0)
        dl = (4.0 * p * q + q) * eps * s0sq  # error bound of every eigenvalue (and of s0sq)
        if rest.all():
            big_lo = big_hi = float(s0sq.max())
        else:
            big_lo, big_hi = max(big_lo, float(s0sq.max())), big_hi
        dbig = (4.0 * p * q + q) * eps * big_hi

        def above(t, ref_lo, ref_hi, dref):  # certainly s_i^2 > t ref, and certainly not
            return e > t * (ref_hi + dref) + dl, e < t * np.maximum(ref_lo - dref, 0.0) - dl

        hi_yes, hi_no = above(RANK_HI ** 2, s0sq, s0sq, dl)
        lo1_yes, lo1_no = above(RANK_LO ** 2, s0sq, s0sq, dl)
        lo2_yes, lo2_no = above(RANK_ABS ** 2, big_lo, big_hi, dbig)
        lo_min = np.sum(lo1_yes & lo2_yes, axis=1)
        lo_max = np.sum(~(lo1_no | lo2_no), axis=1)
        hi_min = np.sum(hi_yes, axis=1)
        hi_max = np.sum(~hi_no, axis=1)
        zero = s0sq[:, 0] == 0.0  # an exactly zero map: both counts are 0
        lo_min[zero] = lo_max[zero] = hi_min[zero] = hi_max[zero] = 0
        sure_ok = (lo_max <= st) & (st <= hi_min)
        sure_bad = (st < lo_min) | (st > hi_max)
        undecided = ~(sure_ok | sure_bad)
        rows = np.flatnonzero(rest)
        ok[rows, l] = sure_ok
        if undecided.any():
            sv = np.linalg.svd(M[undecided], compute_uv=False)
            bigsq = big_lo if big_lo == big_hi else float(np.linalg.eigvalsh(G_all)[:, -1].max())
            lo, hi = _rank_counts(sv, float(np.sqrt(max(bigsq, 0.0))))  # big: the batch's s_1
            ok[rows[undecided], l] = (st[undecided] >= lo) & (st[undecided] <= hi)
    return ok


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
