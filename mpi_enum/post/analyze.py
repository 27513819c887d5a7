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
domain's dimension).  When ``mpi-enum graph`` has run on the file, a section "region graph"
reports its edges, linear regions (regions with one affine map joined through facets), distinct
affine maps, the decision boundary's length (2-D) and the volumes (``--vertices``).  With
``-o DIR`` it writes ``layers.csv``, ``rank_distribution.csv``,
``rank_children.csv`` and the figures ``regions_per_layer.png``, ``rank_distribution.png``,
``children_vs_rank.png``.
"""
from __future__ import annotations

import csv
import json
import os

import numpy as np

from ..errors import InputError
from ..io.graph_file import read_geometry
from ..io.reader import load_result
from .buckets import buckets, packed_prefix_groups
from .geometry import arrangement_bound, prefix_groups  # noqa: F401 (prefix_groups: part of this module's API)



# =============================================================================== analysis

def _add_hist(hists, key, values):
    """Add the histogram of the non-negative integers ``values`` to ``hists[key]``."""
    h = np.bincount(values)
    old = hists.get(key)
    if old is not None:
        if len(old) < len(h):
            old, h = h, old
        old[:len(h)] += h
        h = old
    hists[key] = h.astype(np.int64, copy=False)


def hist_quantiles(hist):
    """Minimum, quartiles and maximum (``np.quantile``'s default linear rule) of the integers
    whose histogram is ``hist`` (``hist[c]`` = how many equal ``c``), without expanding them."""
    cum = np.cumsum(hist)
    n = int(cum[-1])
    out = []
    for q in (0.0, 0.25, 0.5, 0.75, 1.0):
        p = q * (n - 1)
        lo = int(np.floor(p))
        a = float(np.searchsorted(cum, lo, side="right"))
        b = float(np.searchsorted(cum, min(lo + 1, n - 1), side="right"))
        out.append(a + (p - lo) * (b - a))
    return out


def analyze_result(res):
    """Everything ``analyze`` prints and writes, as plain Python data.

    Streams the rows (``res`` may be loaded with ``regions=False``) one first-layer bucket at a
    time (:mod:`mpi_enum.post.buckets`): memory is bounded whatever the number of regions."""
    off = res.offsets
    L = res.L
    k = res.k
    counts = [0] * L
    rank_count = [dict() for _ in range(L)]  # layer -> rank -> regions of that layer
    children = [dict() for _ in range(L)]  # layer -> rank -> histogram of children per parent
    inconsistent = 0
    for _, _, bk in buckets(res, ("pattern", "affine_rank")):
        if len(bk["pattern"]) == 0:
            continue
        groups = []
        for l in range(L):
            g, ng = packed_prefix_groups(bk["pattern"], int(off[l + 1]))
            groups.append((g, ng))
            counts[l] += ng
        for l in range(L):
            g, ng = groups[l]
            # rank of each layer-l region (identical over its members; count disagreements)
            rk = bk["affine_rank"][:, l]
            rmin = np.full(ng, np.iinfo(np.int64).max)
            rmax = np.full(ng, np.iinfo(np.int64).min)
            np.minimum.at(rmin, g, rk)
            np.maximum.at(rmax, g, rk)
            inconsistent += int(np.sum(rmin != rmax))
            prank = rmax
            vals, cnt = np.unique(prank, return_counts=True)
            for v, c in zip(vals, cnt):
                rank_count[l][int(v)] = rank_count[l].get(int(v), 0) + int(c)
            if l + 1 < L:
                gc = groups[l + 1][0]
                pairs = np.unique(np.stack([g, gc], axis=1), axis=0)
                ch = np.bincount(pairs[:, 0], minlength=ng)
                for v in vals:
                    _add_hist(children[l], int(v), ch[prank == v])
    layers = []
    for l in range(L):
        layers.append({"layer": l + 1, "width": int(res.widths[l]), "n_regions": int(counts[l]),
                       "n_regions_recorded": int(res.layer_counts[l]) if l < len(res.layer_counts) else -1})
    rank_dist = []
    rank_children = []
    # layer 0: the whole domain is the parent of the layer-1 regions
    if res.n:
        rank_children.append({"layer": 0, "rank": int(k), "n_parents": 1,
                              "children_mean": float(counts[0]), "children_min": float(counts[0]),
                              "children_q25": float(counts[0]), "children_median": float(counts[0]),
                              "children_q75": float(counts[0]), "children_max": float(counts[0]),
                              "bound": arrangement_bound(res.widths[0], k),
                              "next_width": int(res.widths[0])})
    for l in range(L):
        if res.n == 0:
            continue
        ng = counts[l]
        for v in sorted(rank_count[l]):
            c = rank_count[l][v]
            rank_dist.append({"layer": l + 1, "rank": int(v), "n_regions": int(c), "fraction": float(c / ng)})
        if l + 1 < L:
            for v in sorted(children[l]):
                h = children[l][v]
                q = hist_quantiles(h)
                n_par = int(h.sum())
                rank_children.append({"layer": l + 1, "rank": int(v), "n_parents": n_par,
                                      "children_mean": float(int(h @ np.arange(len(h))) / n_par),
                                      "children_min": q[0],
                                      "children_q25": q[1], "children_median": q[2], "children_q75": q[3],
                                      "children_max": q[4], "bound": arrangement_bound(res.widths[l + 1], v),
                                      "next_width": int(res.widths[l + 1])})
    return {"path": res.path, "n_regions": res.n, "input_dim": res.d, "reduced_dim": int(k),
            "hidden_widths": list(res.widths), "complete": bool(res.attrs.get("complete", True)),
            "layers": layers, "rank_distribution": rank_dist, "rank_children": rank_children,
            "rank_inconsistent_groups": inconsistent, "graph": _graph_report(res)}


def _graph_report(res):
    """The region graph's numbers (None when ``mpi-enum graph`` has not run on the file)."""
    g = read_geometry(res.path)
    if not g:
        return None
    out = {key: (int(v) if isinstance(v, (int, np.integer)) else float(v)) for key, v in g.items()
           if np.ndim(v) == 0 and not isinstance(v, (str, bytes))}
    if "linear_region" in g and len(g["linear_region"]):
        sizes = np.bincount(g["linear_region"])
        out["regions_per_linear_region_max"] = int(sizes.max())
        out["regions_per_linear_region_mean"] = float(sizes.mean())
    if len(g["edges"]):
        deg = np.bincount(g["edges"].ravel(), minlength=res.n)
        out["neighbours_mean"], out["neighbours_max"] = float(deg.mean()), int(deg.max())
    vol = res.geometry.get("volume")
    if vol is not None and len(vol):
        out["volume_total"], out["volume_min"], out["volume_max"] = (float(np.nansum(vol)), float(np.nanmin(vol)),
                                                                     float(np.nanmax(vol)))
    return out


def _format_graph(g):
    if g is None:
        return ["", "region graph: none in this file (mpi-enum graph OUT.h5 adds it)"]
    lines = ["", "region graph (mpi-enum graph)",
             f"  {g.get('n_edges', 0)} edges (neighbours per region: mean {g.get('neighbours_mean', 0):.2f}, "
             f"max {g.get('neighbours_max', 0)}), {g.get('graph_facets', 0)} facets",
             f"  {g.get('n_linear_regions', 0)} linear regions (regions each: mean "
             f"{g.get('regions_per_linear_region_mean', 0):.3f}, max {g.get('regions_per_linear_region_max', 0)}), "
             f"{g.get('n_affine_maps', 0)} distinct affine maps",
             f"  unmatched facets {g.get('graph_unmatched', 0)}, one-sided edges {g.get('graph_one_sided', 0)}, "
             f"degenerate facets {g.get('graph_degenerate', 0)}"]
    if "decision_boundary_length" in g:
        lines.append(f"  decision boundary length {g['decision_boundary_length']:.6g}")
    if "volume_total" in g:
        lines.append(f"  volumes: total {g['volume_total']:.10g}, smallest {g['volume_min']:.3g}, "
                     f"largest {g['volume_max']:.3g}")
    return lines


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
    lines += _format_graph(rep.get("graph"))
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


def _save(fig, outdir, name):
    """Lay out, write (120 dpi) and close one figure; returns its path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = os.path.join(outdir, name)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
    files.append(_save(fig, outdir, "regions_per_layer.png"))

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
    files.append(_save(fig, outdir, "rank_distribution.png"))

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
    files.append(_save(fig, outdir, "children_vs_rank.png"))
    return files


def _output_arg(args):
    for name in ("output", "o", "out_dir"):
        v = getattr(args, name, None)
        if v:
            return v
    return None


def main(args) -> int:
    res = load_result(args.out_h5, regions=False)
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
