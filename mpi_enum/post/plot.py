"""``mpi-enum plot OUT.h5 -o FIG.png [--color-by affine|rank|radius|class|layerN]``.

A picture of a 2-D partition: the domain must have dimension k = 2 (a 2-input network, a box
with all but two coordinates fixed, or a ``--plane`` slice).  Every region is filled as the
polygon cut out of the domain by its half-spaces (computed from the result file alone: the
stored network, domain and patterns).

Plot coordinates: for d = 2 the input coordinates themselves; for a box with fixed coordinates
the two free input coordinates; for ``--plane`` the parallelogram coordinates (s, t) of
``x0 + s (x1 - x0) + t (x2 - x0)``, with the three anchor points x0, x1, x2 marked at
(0, 0), (1, 0), (0, 1).  An unbounded domain is drawn inside a window around the regions'
interior points.

Colours (``--color-by``):

* ``affine`` (default): one colour per distinct affine map of the output layer on the region;
  neighbours that compute the same map get the same colour, so the picture shows the partition
  of the network *function* into linear pieces;
* ``rank``: rank of the affine map after the last hidden layer (``--color-by rankN`` for
  layer N, numbered from 1);
* ``layerN``: the layer-N region (pattern prefix through hidden layer N) the region lies in;
* ``radius``: log10 of the inscribed radius;
* ``class``: the arg-max output at the region's interior point (sign of the output if it has
  one unit); where ``mpi-enum graph`` has computed the decision boundary, it is drawn too;
* ``linear``: the linear region (``/regions/linear_region``, written by ``mpi-enum graph``):
  regions with one affine map joined through facets share a colour.
"""
from __future__ import annotations

import colorsys
import hashlib
import os

import numpy as np

from ..io.reader import load_result
from .geometry import (Chart, convex_polygon, domain_box_u, prefix_groups, region_halfspaces,
                      region_maps)
from ..errors import InputError

CHUNK = 2048


class PlotChart:
    """The affine map from u (orthonormal domain coordinates) to the 2-D plot coordinates."""

    def __init__(self, res, chart):
        spec = res.spec
        d = res.d
        self.labels = ("u1", "u2")
        self.anchors = None
        if spec.get("kind") == "plane" and "points" in spec:
            P = np.asarray(spec["points"], float)
            UV = np.stack([P[1] - P[0], P[2] - P[0]], axis=1)  # (d, 2)
            pinv = np.linalg.pinv(UV)
            # p = pinv (x - P0) = pinv (x0 - P0) + pinv Q u
            self.M = pinv @ chart.Q
            self.m = pinv @ (chart.x0 - P[0])
            self.labels = ("s   (x0 -> x1)", "t   (x0 -> x2)")
            self.anchors = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        elif d == 2:
            self.M, self.m = chart.Q.copy(), chart.x0.copy()
            self.labels = ("x1", "x2")
        else:
            nz = np.flatnonzero(np.abs(chart.Q).sum(axis=1) > 0)
            if len(nz) == 2:  # a box with d-2 fixed coordinates
                self.M, self.m = chart.Q[nz], chart.x0[nz]
                self.labels = (f"x{nz[0] + 1}", f"x{nz[1] + 1}")
            else:
                self.M, self.m = np.eye(2), np.zeros(2)

    def __call__(self, U):
        return np.asarray(U, float) @ self.M.T + self.m


def region_polygons(res, chart=None, box=None):
    """Polygons of all regions in u coordinates: list of (m_i, 2) arrays (counter-clockwise)."""
    if res.k != 2:
        raise InputError(f"{res.path}: plot needs a 2-dimensional domain (d = 2 or a --plane slice); this "
                         f"result's domain has dimension {res.k}")
    if res.net is None:
        raise InputError(f"{res.path}: the result file has no /network group, so region polygons cannot be computed")
    chart = chart or Chart(res.domain)
    if box is None:
        box = domain_box_u(chart, chart.to_u(res.points) if res.n else None)
    polys = []
    for s in range(0, res.n, CHUNK):
        e = min(res.n, s + CHUNK)
        bits = res.bits(slice(s, e))
        A, c = region_maps(res.net, chart, bits)
        for i in range(e - s):
            H, g = region_halfspaces(A, c, bits, chart, i)
            polys.append(convex_polygon(H, g, box))
    return polys


def _hue_colors(ids):
    """Distinct, stable colours for integer ids (golden-ratio hue walk; varied lightness)."""
    ids = np.asarray(ids)
    out = np.empty((len(ids), 3))
    for i, v in enumerate(ids):
        hsh = int(v)
        hue = (hsh * 0.6180339887498949) % 1.0
        sat = 0.45 + 0.35 * ((hsh * 7919) % 5) / 4.0
        val = 0.80 + 0.15 * ((hsh * 104729) % 3) / 2.0
        out[i] = colorsys.hsv_to_rgb(hue, sat, val)
    return out


def _affine_ids(res, chart):
    """Index of each region's output affine map (equal maps, up to rounding, share an index)."""
    keys = []
    for s in range(0, res.n, CHUNK):
        e = min(res.n, s + CHUNK)
        bits = res.bits(slice(s, e))
        _, _, Ao, co = region_maps(res.net, chart, bits, with_output=True)
        F = np.concatenate([Ao.reshape(len(Ao), -1), co], axis=1)
        keys.append(F)
    F = np.concatenate(keys) if keys else np.zeros((0, 1))
    scale = max(float(np.abs(F).max()) if F.size else 1.0, 1e-300)
    Fr = np.round(F / scale, 7) + 0.0  # +0.0 turns -0.0 into 0.0
    ids = np.empty(len(Fr), np.int64)
    seen = {}
    for i, row in enumerate(Fr):
        h = hashlib.blake2b(row.tobytes(), digest_size=8).digest()
        ids[i] = seen.setdefault(h, len(seen))
    return ids


def _colors(res, chart, color_by):
    """Face colours (n, 3 or 4), plus (legend entries or a colorbar spec)."""
    import matplotlib

    cb = (color_by or "affine").lower()
    n = res.n
    if cb == "linear":
        lab = res.geometry.get("linear_region")
        if lab is None:
            raise InputError(f"{res.path}: no /regions/linear_region: run `mpi-enum graph {res.path}` first")
        return _hue_colors(lab), {"title": f"{int(lab.max()) + 1 if n else 0} linear regions"}
    if cb == "affine":
        ids = _affine_ids(res, chart)
        return _hue_colors(ids), {"title": f"{int(ids.max()) + 1 if n else 0} distinct output affine maps"}
    if cb.startswith("layer"):
        try:
            l = int(cb[5:])
        except ValueError:
            raise InputError(f"--color-by {color_by}: expected layerN with N a hidden layer number 1..{res.L}") from None
        if not 1 <= l <= res.L:
            raise InputError(f"--color-by {color_by}: the network has hidden layers 1..{res.L}")
        g, ng = prefix_groups(res.bits(), int(res.offsets[l]))
        return _hue_colors(g), {"title": f"{ng} layer-{l} regions"}
    if cb.startswith("rank"):
        try:
            l = int(cb[4:]) if len(cb) > 4 else res.L
        except ValueError:
            raise InputError(f"--color-by {color_by}: expected rank or rankN with N in 1..{res.L}") from None
        if not 1 <= l <= res.L:
            raise InputError(f"--color-by {color_by}: the network has hidden layers 1..{res.L}")
        rk = res.ranks[:, l - 1]
        cmap = matplotlib.colormaps["viridis"]
        top = max(int(rk.max()) if n else 0, 1)
        cols = cmap(rk / top)[:, :3]
        legend = [(int(v), cmap(v / top)[:3]) for v in np.unique(rk)]
        return cols, {"legend": legend, "legend_title": f"rank after layer {l}",
                      "title": f"affine-map rank after hidden layer {l}"}
    if cb == "radius":
        r = np.log10(np.maximum(res.radius, 1e-300))
        lo, hi = (float(r.min()), float(r.max())) if n else (0.0, 1.0)
        norm = matplotlib.colors.Normalize(lo, hi if hi > lo else lo + 1)
        cmap = matplotlib.colormaps["magma"]
        return cmap(norm(r))[:, :3], {"colorbar": (cmap, norm, "log10 inscribed radius"),
                                      "title": "inscribed radius"}
    if cb == "class":
        out = res.net.forward(res.points) if n else np.zeros((0, 1))
        cls = (out[:, 0] > 0).astype(int) if out.shape[1] == 1 else np.argmax(out, axis=1)
        cmap = matplotlib.colormaps["tab10" if max(out.shape[1], 2) <= 10 else "tab20"]
        cols = np.array([cmap(int(c) % cmap.N)[:3] for c in cls]).reshape(-1, 3)
        legend = [(int(v), cmap(int(v) % cmap.N)[:3]) for v in np.unique(cls)]
        return cols, {"legend": legend, "legend_title": "arg max output" if out.shape[1] > 1 else "output > 0",
                      "title": "predicted class"}
    raise InputError(f"--color-by {color_by}: expected affine, linear, rank, rankN, radius, class or layerN")


def plot_result(res, out_png, color_by="affine", dpi=150, edges=True):
    try:
        import matplotlib
    except ImportError:
        raise InputError("figures need matplotlib (pip install matplotlib)") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch

    chart = Chart(res.domain)
    polys_u = region_polygons(res, chart)
    pc = PlotChart(res, chart)
    polys = [pc(P) for P in polys_u]
    cols, info = _colors(res, chart, color_by)
    fig, ax = plt.subplots(figsize=(7, 6.2))
    lw = 0.5 if res.n < 300 else (0.25 if res.n < 3000 else 0.1)
    coll = PolyCollection(polys, facecolors=cols, edgecolors=("#222222" if edges else "face"), linewidths=lw)
    ax.add_collection(coll)
    allp = np.concatenate([p for p in polys if len(p)]) if any(len(p) for p in polys) else np.zeros((1, 2))
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    pad = (0.05 if pc.anchors is not None else 0.02) * np.maximum(hi - lo, 1e-12)
    ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    ax.set_xlabel(pc.labels[0])
    ax.set_ylabel(pc.labels[1])
    if res.spec.get("kind") == "plane" or res.d == 2:
        ax.set_aspect("equal")
    if pc.anchors is not None:
        ax.plot(pc.anchors[:, 0], pc.anchors[:, 1], "o", ms=7, mfc="white", mec="black", mew=1.5, zorder=5)
        for i, (x, y) in enumerate(pc.anchors):
            ax.annotate(f"x{i}", (x, y), textcoords="offset points", xytext=(6, 6), fontsize=10, weight="bold",
                        zorder=6)
    if (color_by or "").lower() == "class":
        _draw_boundary(ax, res, pc, chart)
    if "legend" in info:
        handles = [Patch(facecolor=c, edgecolor="#222222", label=str(v)) for v, c in info["legend"]]
        ax.legend(handles=handles, title=info.get("legend_title"), fontsize=8, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    if "colorbar" in info:
        cmap, norm, label = info["colorbar"]
        sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(sm, ax=ax, label=label)
    name = os.path.basename(res.path)
    kind = res.spec.get("kind", "")
    ax.set_title(f"{name}: {res.n} regions ({kind}); colour: {info.get('title', color_by)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=dpi)
    plt.close(fig)
    return polys


def _draw_boundary(ax, res, pc, chart):
    """The decision boundary segments of ``mpi-enum graph`` (if the file has them)."""
    from matplotlib.collections import LineCollection

    from ..io.graph_file import read_geometry

    seg = read_geometry(res.path).get("decision_segments")
    if seg is not None and len(seg):
        lines = [pc(chart.to_u(s)) for s in seg]
        ax.add_collection(LineCollection(lines, colors="black", linewidths=1.6, zorder=4))


def main(args) -> int:
    out = getattr(args, "output", None) or getattr(args, "o", None)
    if not out:
        raise InputError("plot: -o FIG.png is required")
    res = load_result(args.out_h5, need_network=True)
    if res.k != 2:
        raise InputError(f"{args.out_h5}: plot needs a 2-dimensional domain (d = 2, or --plane); this result's "
                         f"domain has dimension {res.k}")
    if not res.points_stored:  # --points none: one small LP per region (a 2-D domain)
        from .points import recompute_points

        res.points = recompute_points(res)[0]
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise InputError(f"{out}: the directory {parent} does not exist")
    color_by = getattr(args, "color_by", None) or "affine"
    _colors_check(color_by, res)
    try:
        plot_result(res, out, color_by)
    except PermissionError:
        raise InputError(f"{out}: cannot write the figure (permission denied)") from None
    print(f"wrote {out} ({res.n} regions, colour by {color_by})")
    return 0


def _colors_check(color_by, res):
    cb = color_by.lower()
    if cb in ("affine", "linear", "radius", "class", "rank"):
        return
    for pre in ("layer", "rank"):
        if cb.startswith(pre) and cb[len(pre):].isdigit() and 1 <= int(cb[len(pre):]) <= res.L:
            return
    raise InputError(f"--color-by {color_by}: expected affine, linear, rank, rankN, radius, class or layerN "
                     f"(N = 1..{res.L})")
