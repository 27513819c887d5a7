"""Post-processing core and ``mpi-enum analyze`` (layer-wise statistics of a result file).

The first half of this module is shared by :mod:`mpi_enum.verify` and :mod:`mpi_enum.plot`:

* :func:`load_result` reads a result file (CONTRACT §3) with plain h5py (no MPI) into a
  :class:`Result`: the patterns as a bit matrix, the stored network and domain, ...
* :func:`region_maps` computes, for a batch of regions, the affine pre-activation map of every
  hidden neuron in the domain's *orthonormal* coordinates ``u`` (``x = x0 + Q u``, ``Q`` the
  orthonormal basis of the domain's span, so lengths and volumes in ``u`` are input units).
  Everything geometric (half-spaces, gradients, ranks, polygons) derives from it.

``mpi-enum analyze OUT.h5 [-o DIR]``
------------------------------------
Layers are numbered from 1 (the first hidden layer) in all printed and written output.  The
parent of a region at layer ``l`` is the layer-``l`` region with the same first
``sum(hidden_widths[:l])`` pattern bits (the pattern prefix), so every layer's regions, and the
tree of parents, derive from ``/regions/pattern`` alone.  For every layer ``l`` this reports

* the number of layer-``l`` regions (recomputed from prefixes, next to ``/layers/n_regions``),
* the distribution of the rank ``r`` of the affine map after layer ``l`` (``/regions/affine_rank``
  column ``l-1``, constant over a layer-``l`` region),
* for each rank value, the number of children that layer ``l+1`` cuts such a region into
  (mean, min, quartiles, max), next to the hyperplane-arrangement bound
  ``sum_{i<=r} C(n_{l+1}, i)`` (the layer-(l+1) hyperplanes restricted to the region are
  pull-backs of ``n_{l+1}`` hyperplanes of an r-dimensional space).

A first row "layer 0" treats the whole domain as the parent of the layer-1 regions (rank k, the
domain's dimension).  With ``-o DIR`` it writes ``layers.csv``, ``rank_distribution.csv``,
``rank_children.csv`` and the figures ``regions_per_layer.png``, ``rank_distribution.png``,
``children_vs_rank.png``.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from math import comb

import numpy as np

from .errors import InputError
from .results import open_result



# =============================================================================== reading

@dataclass
class Result:
    path: str
    attrs: dict
    n: int
    d: int
    widths: list
    packed: np.ndarray  # (n, ceil(N/8)) uint8
    points: np.ndarray  # (n, d)
    radius: np.ndarray  # (n,)
    ranks: np.ndarray  # (n, L) int
    layer_counts: np.ndarray  # (L,)
    net: object = None  # mpi_enum.network.Network from /network (None if absent)
    domain: object = None  # mpi_enum.domain.Domain from /domain (None if absent)
    spec: dict = field(default_factory=dict)
    has_regions: bool = True
    missing: list = field(default_factory=list)

    @property
    def N(self):
        return int(sum(self.widths))

    @property
    def L(self):
        return len(self.widths)

    @property
    def offsets(self):
        return np.concatenate([[0], np.cumsum(self.widths)]).astype(int)

    @property
    def k(self):
        return self.domain.k if self.domain is not None else self.d

    def bits(self, rows=None):
        """Patterns as a uint8 0/1 matrix (n, N) (or for ``rows``)."""
        p = self.packed if rows is None else self.packed[rows]
        return np.unpackbits(p, axis=1, count=self.N) if p.size else np.zeros((len(p), self.N), np.uint8)


def _attr(a, name, default=None):
    v = a.get(name, default)
    if isinstance(v, bytes):
        v = v.decode()
    return v


def load_result(path, need_network=False):
    """Read a result file.  Raises InputError for anything that is not a readable result file."""
    from .network import Network

    with open_result(path) as f:
        a = f.attrs
        attrs = {k: _attr(a, k) for k in a.keys()}
        missing = [p for p in ("regions/pattern", "regions/interior_point", "regions/radius", "regions/affine_rank",
                               "layers/n_regions") if p not in f]
        if missing:
            raise InputError(f"{path}: missing dataset(s) {', '.join('/' + m for m in missing)}")
        try:
            widths = [int(w) for w in np.atleast_1d(a["hidden_widths"])]
            d = int(a["input_dim"])
        except KeyError as exc:
            raise InputError(f"{path}: missing root attribute {exc}") from None
        packed = np.asarray(f["regions/pattern"][()], dtype=np.uint8)
        pts = np.asarray(f["regions/interior_point"][()], dtype=np.float64)
        rad = np.asarray(f["regions/radius"][()], dtype=np.float64)
        rk = np.asarray(f["regions/affine_rank"][()]).astype(np.int64)
        lc = np.asarray(f["layers/n_regions"][()], dtype=np.int64)
        n = len(rad)
        N = sum(widths)
        if packed.ndim != 2 or packed.shape != (n, (N + 7) // 8):
            raise InputError(f"{path}: /regions/pattern has shape {packed.shape}, expected ({n}, {(N + 7) // 8})")
        if pts.shape != (n, d):
            raise InputError(f"{path}: /regions/interior_point has shape {pts.shape}, expected ({n}, {d})")
        if rk.shape != (n, len(widths)):
            raise InputError(f"{path}: /regions/affine_rank has shape {rk.shape}, expected ({n}, {len(widths)})")
        net = None
        if "network" in f:
            Ws, bs = [], []
            i = 0
            while f"network/W{i}" in f:
                Ws.append(np.asarray(f[f"network/W{i}"][()], dtype=np.float64))
                bs.append(np.asarray(f[f"network/b{i}"][()], dtype=np.float64))
                i += 1
            if Ws:
                net = Network(Ws, bs, source=path, sha256=str(attrs.get("network_sha256", "")))
        if need_network and net is None:
            raise InputError(f"{path}: the result file has no /network group (written by an older mpi_enum?)")
        try:
            spec = json.loads(attrs.get("domain") or "{}")
        except ValueError:
            spec = {}
        dom = None
        if "domain" in f and "domain/E" in f:
            dom = _domain_from_arrays(np.asarray(f["domain/x0"][()], float), np.asarray(f["domain/E"][()], float),
                                      np.asarray(f["domain/G"][()], float), np.asarray(f["domain/h"][()], float),
                                      spec)
    if dom is None and net is not None:
        try:
            dom = domain_from_spec(spec, net)
        except Exception:
            dom = None
    if dom is None:
        raise InputError(f"{path}: the result file has no /domain group and its domain attribute cannot be rebuilt")
    return Result(path, attrs, n, d, widths, packed, pts, rad, rk, lc, net, dom, spec)


def _domain_from_arrays(x0, E, G, h, spec):
    from .domain import Domain, _bbox

    d, k = E.shape
    G = G.reshape(-1, k)
    rscale = float(np.linalg.svd(E, compute_uv=False).min()) if k else 1.0
    y_lo = y_hi = None
    if len(G):
        y_lo, y_hi = _bbox(G, h)
    return Domain(str(spec.get("kind", "unknown")), d, k, x0, E, G, h, rscale, y_lo, y_hi, dict(spec))


def domain_from_spec(spec, net):
    """Rebuild the domain from the root attribute ``domain`` (JSON) and the network."""
    from .domain import box_domain, line_domain, plane_domain, polytope_domain, unbounded_domain

    d = net.input_dim
    kind = spec.get("kind")
    if kind in ("box", "ball"):
        return box_domain(np.asarray(spec["lo"], float), np.asarray(spec["hi"], float), dict(spec))
    if kind == "polytope":
        return polytope_domain(np.asarray(spec["A"], float), np.asarray(spec["b"], float), d, spec.get("file", "--polytope"))
    if kind == "plane":
        return plane_domain(np.asarray(spec["points"], float), d, spec.get("file", "--plane"))
    if kind == "line":
        return line_domain(np.asarray(spec["points"], float), d, spec.get("file", "--line"))
    if kind == "unbounded":
        return unbounded_domain(d)
    raise ValueError(f"unknown domain kind {kind!r}")


# =============================================================================== geometry

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
    """Affine pre-activation maps on a batch of regions, in ``u`` coordinates.

    ``bits`` (n, N) 0/1 patterns (the masks of the hidden layers).  Returns ``A`` (n, N, k) and
    ``c`` (n, N): neuron j's pre-activation on region i is ``A[i, j] @ u + c[i, j]``.  With
    ``with_output`` also the output layer's map ``(Ao (n, n_out, k), co (n, n_out))``.
    """
    bits = np.asarray(bits)
    n = len(bits)
    Ws, bs = net.weights, net.biases
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


def region_halfspaces(A, c, bits, chart, i, zero_tol=1e-13):
    """Half-spaces ``H u <= g`` (unit-norm rows) of region i: its neurons' sides and the domain."""
    a = A[i]
    s = np.where(np.asarray(bits[i]) > 0, -1.0, 1.0)  # active: -(a u + c) <= 0; inactive: a u + c <= 0
    nrm = np.linalg.norm(a, axis=1)
    scale = max(float(nrm.max()) if nrm.size else 0.0, 1e-300)
    keep = nrm > zero_tol * scale
    H = (s[keep, None] * a[keep]) / nrm[keep, None]
    g = -(s[keep] * c[i][keep]) / nrm[keep]
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
    from .domain import _bbox

    if len(chart.Gu):
        lo, hi = _bbox(chart.Gu, chart.hu)
        if lo is not None:
            return lo, hi
    P = np.asarray(fallback_points if fallback_points is not None else np.zeros((1, chart.k)), float)
    lo, hi = P.min(axis=0), P.max(axis=0)
    ext = np.maximum(hi - lo, 1.0)
    return lo - pad * ext, hi + pad * ext


# =============================================================================== analysis

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


def _quantiles(v):
    q = np.quantile(v, [0.0, 0.25, 0.5, 0.75, 1.0])
    return [float(x) for x in q]


def analyze_result(res):
    """Everything ``analyze`` prints and writes, as plain Python data."""
    bits = res.bits()
    off = res.offsets
    L = res.L
    k = res.k
    groups = []
    counts = []
    for l in range(L):
        g, ng = prefix_groups(bits, int(off[l + 1]))
        groups.append(g)
        counts.append(ng)
    layers = []
    for l in range(L):
        layers.append({"layer": l + 1, "width": int(res.widths[l]), "n_regions": int(counts[l]),
                       "n_regions_recorded": int(res.layer_counts[l]) if l < len(res.layer_counts) else -1})
    rank_dist = []
    rank_children = []
    inconsistent = 0
    # layer 0: the whole domain is the parent of the layer-1 regions
    if res.n:
        rank_children.append({"layer": 0, "rank": int(k), "n_parents": 1,
                              "children_mean": float(counts[0]), "children_min": float(counts[0]),
                              "children_q25": float(counts[0]), "children_median": float(counts[0]),
                              "children_q75": float(counts[0]), "children_max": float(counts[0]),
                              "bound": arrangement_bound(res.widths[0], k),
                              "next_width": int(res.widths[0])})
    for l in range(L):
        g, ng = groups[l], counts[l]
        if res.n == 0:
            continue
        # rank of each layer-l region (identical over its members; count disagreements)
        rk = res.ranks[:, l]
        rmin = np.full(ng, np.iinfo(np.int64).max)
        rmax = np.full(ng, np.iinfo(np.int64).min)
        np.minimum.at(rmin, g, rk)
        np.maximum.at(rmax, g, rk)
        inconsistent += int(np.sum(rmin != rmax))
        prank = rmax
        vals, cnt = np.unique(prank, return_counts=True)
        for v, c in zip(vals, cnt):
            rank_dist.append({"layer": l + 1, "rank": int(v), "n_regions": int(c), "fraction": float(c / ng)})
        if l + 1 < L:
            gc = groups[l + 1]
            pairs = np.unique(np.stack([g, gc], axis=1), axis=0)
            children = np.bincount(pairs[:, 0], minlength=ng)
            for v in vals:
                ch = children[prank == v]
                q = _quantiles(ch)
                rank_children.append({"layer": l + 1, "rank": int(v), "n_parents": int(len(ch)),
                                      "children_mean": float(ch.mean()), "children_min": q[0],
                                      "children_q25": q[1], "children_median": q[2], "children_q75": q[3],
                                      "children_max": q[4], "bound": arrangement_bound(res.widths[l + 1], v),
                                      "next_width": int(res.widths[l + 1])})
    return {"path": res.path, "n_regions": res.n, "input_dim": res.d, "reduced_dim": int(k),
            "hidden_widths": list(res.widths), "complete": bool(res.attrs.get("complete", True)),
            "layers": layers, "rank_distribution": rank_dist, "rank_children": rank_children,
            "rank_inconsistent_groups": inconsistent}


def format_report(rep):
    lines = []
    lines.append(f"{rep['path']}: {rep['n_regions']} regions, input dim {rep['input_dim']} "
                 f"(domain dim {rep['reduced_dim']}), hidden widths {rep['hidden_widths']}"
                 + ("" if rep["complete"] else "  [PARTIAL RESULT]"))
    lines.append("")
    lines.append("regions per layer (layer-l region = distinct pattern prefix through layer l)")
    lines.append(f"  {'layer':>5} {'width':>6} {'regions':>10} {'recorded':>10}")
    for r in rep["layers"]:
        lines.append(f"  {r['layer']:>5} {r['width']:>6} {r['n_regions']:>10} {r['n_regions_recorded']:>10}")
    lines.append("")
    lines.append("affine-map rank after layer l (over the layer-l regions)")
    lines.append(f"  {'layer':>5} {'rank':>5} {'regions':>10} {'fraction':>9}")
    for r in rep["rank_distribution"]:
        lines.append(f"  {r['layer']:>5} {r['rank']:>5} {r['n_regions']:>10} {r['fraction']:>9.4f}")
    lines.append("")
    lines.append("children per region cut by layer l+1, by rank r of the parent's affine map")
    lines.append("  (bound = sum_{i<=r} C(n_{l+1}, i); layer 0 = the whole domain)")
    lines.append(f"  {'layer':>5} {'rank':>5} {'parents':>8} {'mean':>9} {'min':>6} {'q25':>7} {'median':>7} "
                 f"{'q75':>7} {'max':>6} {'bound':>10}")
    for r in rep["rank_children"]:
        lines.append(f"  {r['layer']:>5} {r['rank']:>5} {r['n_parents']:>8} {r['children_mean']:>9.3f} "
                     f"{r['children_min']:>6.0f} {r['children_q25']:>7.1f} {r['children_median']:>7.1f} "
                     f"{r['children_q75']:>7.1f} {r['children_max']:>6.0f} {r['bound']:>10}")
    if rep["rank_inconsistent_groups"]:
        lines.append("")
        lines.append(f"warning: {rep['rank_inconsistent_groups']} layer regions have members with different "
                     "recorded ranks (the maximum is used)")
    return "\n".join(lines)


def _write_csv(path, rows, cols):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)


def write_outputs(rep, outdir):
    os.makedirs(outdir, exist_ok=True)
    files = []
    p = os.path.join(outdir, "layers.csv")
    _write_csv(p, rep["layers"], ["layer", "width", "n_regions", "n_regions_recorded"])
    files.append(p)
    p = os.path.join(outdir, "rank_distribution.csv")
    _write_csv(p, rep["rank_distribution"], ["layer", "rank", "n_regions", "fraction"])
    files.append(p)
    p = os.path.join(outdir, "rank_children.csv")
    _write_csv(p, rep["rank_children"], ["layer", "rank", "n_parents", "children_mean", "children_min",
                                         "children_q25", "children_median", "children_q75", "children_max",
                                         "bound", "next_width"])
    files.append(p)
    files += _figures(rep, outdir)
    return files


def _figures(rep, outdir):
    try:
        import matplotlib
    except ImportError:
        raise InputError("figures need matplotlib (pip install matplotlib)") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    lay = rep["layers"]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    xs = [r["layer"] for r in lay]
    ax.bar(xs, [r["n_regions"] for r in lay], color="#4c72b0")
    ax.set_xlabel("hidden layer")
    ax.set_ylabel("regions")
    ax.set_xticks(xs)
    if lay and max(r["n_regions"] for r in lay) > 50 * max(1, min(r["n_regions"] for r in lay)):
        ax.set_yscale("log")
    ax.set_title("regions after each hidden layer")
    fig.tight_layout()
    p = os.path.join(outdir, "regions_per_layer.png")
    fig.savefig(p, dpi=120)
    plt.close(fig)
    files.append(p)

    L = len(lay)
    fig, axes = plt.subplots(1, max(L, 1), figsize=(3.2 * max(L, 1), 3.2), squeeze=False)
    for l in range(L):
        ax = axes[0, l]
        rows = [r for r in rep["rank_distribution"] if r["layer"] == l + 1]
        ax.bar([r["rank"] for r in rows], [r["n_regions"] for r in rows], color="#55a868")
        ax.set_xticks(sorted({r["rank"] for r in rows}))
        ax.set_title(f"layer {l + 1}")
        ax.set_xlabel("rank of affine map")
        if l == 0:
            ax.set_ylabel("layer regions")
    fig.tight_layout()
    p = os.path.join(outdir, "rank_distribution.png")
    fig.savefig(p, dpi=120)
    plt.close(fig)
    files.append(p)

    trans = sorted({r["layer"] for r in rep["rank_children"]})
    fig, axes = plt.subplots(1, max(len(trans), 1), figsize=(3.4 * max(len(trans), 1), 3.4), squeeze=False)
    for i, l in enumerate(trans):
        ax = axes[0, i]
        rows = [r for r in rep["rank_children"] if r["layer"] == l]
        rks = np.array([r["rank"] for r in rows])
        ax.errorbar(rks, [r["children_mean"] for r in rows],
                    yerr=[[r["children_mean"] - r["children_min"] for r in rows],
                          [r["children_max"] - r["children_mean"] for r in rows]],
                    fmt="o", color="#c44e52", capsize=3, label="mean (min..max)")
        ax.plot(rks, [r["bound"] for r in rows], "k_", markersize=14, label="bound")
        ax.plot(rks, [r["children_median"] for r in rows], "o", mfc="none", mec="#c44e52", ms=9, label="median")
        ax.set_yscale("log")
        top = max([r["bound"] for r in rows] + [r["children_max"] for r in rows])
        ax.set_ylim(0.7, top * 2.0)
        ax.set_xlim(min(rks) - 0.6, max(rks) + 0.6)
        ax.set_xticks(sorted(set(int(x) for x in rks)))
        ax.set_xlabel("rank r of parent's affine map")
        ax.set_title("domain -> layer 1" if l == 0 else f"layer {l} -> layer {l + 1}")
        if i == 0:
            ax.set_ylabel("children")
            ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    p = os.path.join(outdir, "children_vs_rank.png")
    fig.savefig(p, dpi=120)
    plt.close(fig)
    files.append(p)
    return files


def _output_arg(args):
    for name in ("output", "o", "out_dir"):
        v = getattr(args, name, None)
        if v:
            return v
    return None


def main(args) -> int:
    res = load_result(args.out_h5)
    rep = analyze_result(res)
    print(format_report(rep))
    outdir = _output_arg(args)
    if outdir:
        if os.path.exists(outdir) and not os.path.isdir(outdir):
            raise InputError(f"{outdir}: exists and is not a directory")
        try:
            files = write_outputs(rep, outdir)
        except PermissionError:
            raise InputError(f"{outdir}: output directory is not writable") from None
        with open(os.path.join(outdir, "summary.json"), "w") as fh:
            json.dump(rep, fh, indent=1)
        print("")
        print("wrote " + ", ".join(files + [os.path.join(outdir, "summary.json")]))
    else:
        print("\n(use -o DIR for CSV files and figures)")
    return 0
