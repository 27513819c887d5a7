"""``mpi-enum graph OUT.h5 [-o NEW.h5] [--vertices]``: the region adjacency graph, linear
regions, and (``--vertices``) vertices and volumes, over the ranks of a communicator.

Each rank takes a contiguous share of the region rows.  For every region it finds the facets
(:mod:`~mpi_enum.geometry.facets`) and, for each neuron facet, the neighbour across it: from the
facet's witness point ``p`` it steps ``STEP`` times the witness's margin across the hyperplane
and computes the pattern there by a forward pass of the stored network (the same rule as the
engine's and ``verify``'s: bit 1 iff pre-activation > 0).  Flipping neuron j changes the
hyperplanes of every later layer, so the neighbour's later bits are whatever the forward pass
gives, not the region's; its bits up to j's layer must be the region's with j's group flipped,
or the facet counts as unmatched.  The stored region with that pattern is found through the
all-to-all hash partition (:mod:`~mpi_enum.geometry.exchange`).  Every edge is normally found
from both of its regions; both findings go to the rank that holds the lower region, which
keeps the edge once (its neuron: the lower of the two findings').

Degenerate facets: a facet whose hyperplane belongs to several neurons on this region
(proportional functions) is one edge, named by the lowest of those neurons; the neighbour
differs from the region in all of them (counted in ``graph_degenerate``).  A facet whose
neighbour holds no ball of radius > tol (the run did not list it) has no edge
(``graph_unmatched``), nor has a facet on the domain's boundary.  An edge found from one side
only (a facet thinner than the tolerance on the other side) is kept (``graph_one_sided``).

Equal input-to-output maps on the two sides of an edge join the two regions into one linear
region (:mod:`~mpi_enum.geometry.linear`); on 2-D domains the decision boundary is computed
too (:mod:`~mpi_enum.geometry.decision`).  The result goes into the file through
:func:`mpi_enum.io.graph_file.write_geometry`.

May import: :mod:`mpi_enum.io`, :mod:`mpi_enum.post.geometry`, :mod:`mpi_enum.post.points`, this
package, numpy.
"""
from __future__ import annotations

import os
import time

import numpy as np

from ..errors import InputError
from ..io.graph_file import Part, write_geometry
from ..io.reader import load_result
from ..post.geometry import Chart, convex_polygon, domain_box_u, region_halfspaces, region_maps
from ..post.points import recompute_points
from . import decision, linear
from .exchange import PatternIndex, as_comm, count_distinct, route
from .facets import FacetStats, region_facets
from .vertices import MAX_VERTEX_DIM, region_vertices

CHUNK = 1024
STEP = 1e-3  # the step across a facet, in units of the witness's margin


def _agree(comm, fn):
    """``fn()`` on every rank; an InputError on any rank is raised on all (lowest rank's)."""
    value, msg = None, None
    try:
        value = fn()
    except InputError as exc:
        msg = str(exc)
    msgs = comm.allgather(msg)
    bad = [m for m in msgs if m is not None]
    if bad:
        raise InputError(bad[0])
    return value


def _check(src, out, force, vertices, comm):
    if not os.path.exists(src):
        raise InputError(f"{src}: no such file")
    res = load_result(src, need_network=True, rows=slice(0, 0))
    if not bool(res.attrs.get("complete", True)):
        raise InputError(f"{src}: a partial result (complete = false): the graph needs every region; finish the run "
                         f"with --resume first")
    if out != src and os.path.exists(out) and not force:
        raise InputError(f"{out}: exists (use --force to replace it)")
    if out != src and not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        raise InputError(f"{out}: the directory {os.path.dirname(os.path.abspath(out))} does not exist")
    if vertices and not res.domain.bounded:
        raise InputError(f"{src}: --vertices needs a bounded domain (this result's is unbounded)")
    if vertices and res.k > MAX_VERTEX_DIM:
        raise InputError(f"{src}: --vertices is offered up to domain dimension {MAX_VERTEX_DIM}; this result's "
                         f"domain has dimension {res.k}")
    return res.n_total


class _Local:
    """What one rank finds about its rows."""

    def __init__(self, d, k):
        self.q_row, self.q_neuron, self.q_pat, self.q_equal = [], [], [], []
        self.unmatched = 0
        self.maps = []
        self.vert, self.nvert, self.volume, self.vfail = [], [], [], 0
        self.seg, self.seg_region, self.seg_cls = [], [], []
        self.stats = FacetStats()
        self.d, self.k = d, k


def _chunk(res, chart, s, e, facet_tol, rng, loc, vertices, box):
    """Facets, neighbour queries, maps, vertices and boundary of rows s..e-1 held by this rank."""
    net, dom = res.net, res.domain
    bits = res.bits(slice(s, e))
    A, c, Ao, co = region_maps(net, chart, bits, with_output=True)
    loc.maps.append(linear.flat_maps(Ao, co))
    U = chart.to_u(res.points[s:e])
    Q, rows, neurons, groups = [], [], [], []
    for i in range(e - s):
        H, g, idx = region_halfspaces(A, c, bits, chart, i, with_index=True)
        for j, members, p, margin in region_facets(H, g, U[i], len(idx), facet_tol, rng, loc.stats,
                                                   screen=dom.bounded):
            Q.append(p + STEP * margin * H[j])
            rows.append(s + i)
            neurons.append(int(idx[j]))
            groups.append(idx[members])
        if vertices:
            try:
                V, vol = region_vertices(H, g, U[i])
            except ValueError:
                loc.vfail += 1
                V, vol = np.zeros((0, chart.k)), np.nan
            loc.vert.append(chart.to_x(V))
            loc.nvert.append(len(V))
            loc.volume.append(vol)
        if chart.k == 2:
            poly = convex_polygon(H, g, box)
            for p, q, c1, c2 in decision.region_boundary(poly, H, g, Ao[i], co[i], box):
                loc.seg.append(chart.to_x(np.stack([p, q])))
                loc.seg_region.append(res.row_start + s + i)
                loc.seg_cls.append((c1, c2))
    if not rows:
        return
    rows = np.asarray(rows)
    P = net.patterns(chart.to_x(np.asarray(Q))).astype(np.uint8)
    expect = bits[rows - s].copy()
    ok = np.ones(len(rows), bool)
    offs = res.offsets
    gbit, spans = _group_bits(net)
    for t, (nj, grp) in enumerate(zip(neurons, groups)):
        if gbit is None:
            expect[t, grp] ^= 1
        else:
            _cross(expect[t], grp, P[t], gbit, spans)
        upto = int(offs[np.searchsorted(offs, nj, side="right")])  # end of neuron nj's layer
        ok[t] = np.array_equal(P[t, :upto], expect[t, :upto])
    loc.unmatched += int((~ok).sum())
    _, _, Aon, con = region_maps(net, chart, P[ok], with_output=True)
    loc.q_equal.append(linear.maps_equal(loc.maps[-1][rows[ok] - s], linear.flat_maps(Aon, con), _scale_hint(Ao)))
    loc.q_row.append(res.row_start + rows[ok])
    loc.q_neuron.append(np.asarray(neurons)[ok])
    loc.q_pat.append(np.packbits(P[ok], axis=1))


def _group_bits(net):
    """(the max group of each pattern bit, -1 none; the groups' (start, size)), or (None, None)."""
    if getattr(net, "groups", None) is None:
        return None, None
    spans = net.group_spans()
    gbit = np.full(net.n_hidden, -1, np.int64)
    for q, (s, k) in enumerate(spans):
        gbit[s:s + k] = q
    return gbit, spans


def _cross(expect, grp, p, gbit, spans):
    """In place: the pattern ``expect`` beyond the facet of the neurons ``grp``: a ReLU-like bit
    flips; a max group's member t on it (the comparison z_t = z_selected) becomes the selected one
    (of several members on one degenerate facet: the one the point beyond, ``p``, selects)."""
    for j in grp:
        q = gbit[j]
        if q < 0:
            expect[j] ^= 1
            continue
        s, k = spans[q]
        cand = [int(t) for t in grp if gbit[t] == q]
        pick = next((t for t in cand if p[t]), cand[0])
        expect[s:s + k] = 0
        expect[pick] = 1


def _scale_hint(Ao):
    return float(np.abs(Ao).max()) if Ao.size else 1.0


def _cat(parts, shape, dtype):
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(shape, dtype)


def _edges(comm, loc, res, bounds):
    """All findings to the owners of their lower rows; returns this rank's sorted, deduplicated
    edges (a, b, neuron, equal) and the one-sided count."""
    pb = res.packed.shape[1]
    qrow = _cat(loc.q_row, 0, np.int64)
    qpat = _cat(loc.q_pat, (0, pb), np.uint8)
    index = PatternIndex(comm, res.packed, res.row_start + np.arange(res.n, dtype=np.int64))
    nb = index.lookup(qpat)
    hit = nb >= 0
    loc.unmatched += int((~hit).sum())
    a = np.minimum(qrow[hit], nb[hit])
    b = np.maximum(qrow[hit], nb[hit])
    side = (qrow[hit] == a).astype(np.int8)  # 1: found from the lower region
    neuron = _cat(loc.q_neuron, 0, np.int64)[hit]
    equal = _cat(loc.q_equal, 0, bool)[hit]
    dest = np.searchsorted(bounds, a, side="right") - 1
    a, b, side, neuron, equal = route(comm, (a, b, side, neuron, equal.astype(np.int8)), dest)
    if len(a) == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.int64), np.zeros(0, bool), 0
    order = np.lexsort((neuron, b, a))
    a, b, side, neuron, equal = a[order], b[order], side[order], neuron[order], equal[order]
    first = np.ones(len(a), bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    start = np.flatnonzero(first)
    sides = np.add.reduceat(side.astype(np.int64) * 2 - 1, start)  # +1 -1: both sides; else one
    counts = np.diff(np.append(start, len(a)))
    one_sided = int(np.sum((counts == 1) | (np.abs(sides) == counts)))
    eq = np.maximum.reduceat(equal, start).astype(bool)
    return np.stack([a[start], b[start]], axis=1), neuron[start], eq, one_sided


def build_graph(src, out=None, comm=None, vertices=False, force=False, seed=0, log=None):
    """Compute the geometry of the result ``src`` on the ranks of ``comm`` (None: alone) and
    write it to ``out`` (default: ``src`` itself, replaced atomically).  Returns a summary dict
    (the same on every rank).  Raises InputError (bad input, on every rank) or OutputError."""
    comm_ = as_comm(comm)
    out = src if out is None else out
    t0 = time.perf_counter()
    n = _agree(comm_, lambda: _check(src, out, force, vertices, comm_))
    size, rank = comm_.size, comm_.rank
    bounds = np.array([(n * r) // size for r in range(size + 1)], np.int64)
    res = load_result(src, need_network=True, rows=slice(int(bounds[rank]), int(bounds[rank + 1])))
    if not res.points_stored:  # --points none: the facet certificates start from recomputed points
        res.points = recompute_points(res)[0]
    chart = Chart(res.domain)
    tol = float(res.attrs.get("tol", 1e-9))
    facet_tol = max(tol, 1e-12) * float(res.domain.rscale)
    box = domain_box_u(chart, chart.to_u(res.points) if res.n else None) if chart.k == 2 else None
    rng = np.random.default_rng([seed, rank])
    loc = _Local(res.d, chart.k)
    for s in range(0, res.n, CHUNK):
        _chunk(res, chart, s, min(res.n, s + CHUNK), facet_tol, rng, loc, vertices, box)
    t_facets = time.perf_counter() - t0
    F = _cat(loc.maps, (0, 1), np.float64)
    scale = max(comm_.allgather(float(np.abs(F).max()) if F.size else 0.0))
    n_maps = count_distinct(comm_, linear.map_keys(F, scale) if len(F) else np.zeros((0, 8), np.uint8))
    edges, neuron, equal, one_sided = _edges(comm_, loc, res, bounds)
    labels = linear.components(n, np.concatenate(comm_.allgather(edges[equal])))
    st = loc.stats

    def tot(v):
        return int(comm_.allreduce(int(v)))

    counts = comm_.allgather(len(edges))
    e_off, n_edges = int(sum(counts[:rank])), int(sum(counts))
    parts = [Part("graph/edges", (n_edges, 2), np.int64, e_off, edges),
             Part("graph/neuron", (n_edges,), np.int32, e_off, neuron),
             Part("regions/linear_region", (n,), np.int64, bounds[rank], labels[bounds[rank]:bounds[rank + 1]])]
    summary = {"n_regions": n, "n_edges": n_edges, "n_linear_regions": int(labels.max()) + 1 if n else 0,
               "n_affine_maps": n_maps, "graph_facets": tot(st.facets), "graph_rows": tot(st.rows),
               "graph_by_ray": tot(st.by_ray), "graph_by_screen": tot(st.by_screen), "graph_lps": tot(st.lps),
               "graph_degenerate": tot(st.degenerate), "graph_unmatched": tot(loc.unmatched),
               "graph_one_sided": tot(one_sided), "graph_ranks": size, "graph_seed": int(seed)}
    if vertices:
        parts += _vertex_parts(comm_, loc, n, bounds, rank, res.d)
        summary["graph_vertex_failures"] = tot(loc.vfail)
    if chart.k == 2:
        dparts, length = _decision_parts(comm_, loc, res.d)
        parts += dparts
        summary["decision_boundary_length"] = length
    summary["graph_seconds"] = float(max(comm_.allgather(time.perf_counter() - t0)))
    summary["graph_facet_seconds"] = float(max(comm_.allgather(t_facets)))
    attrs = {key: (np.int64(v) if isinstance(v, (int, np.integer)) else float(v)) for key, v in summary.items()
             if key != "n_regions"}
    io_mode = write_geometry(src, out, comm if comm is not None and size > 1 else None, parts, attrs,
                             replace=(out == src) or force)
    summary.update(path=out, io_mode=io_mode)
    return summary


def _vertex_parts(comm, loc, n, bounds, rank, d):
    nv = np.asarray(loc.nvert, np.int64)
    counts = comm.allgather(int(nv.sum()))
    v_off, total = int(sum(counts[:rank])), int(sum(counts))
    offsets = v_off + np.concatenate([[0], np.cumsum(nv)[:-1]]) if len(nv) else np.zeros(0, np.int64)
    last = rank == comm.size - 1
    if last:
        offsets = np.append(offsets, total)
    return [Part("vertices/points", (total, d), np.float64, v_off, _cat(loc.vert, (0, d), np.float64)),
            Part("vertices/offset", (n + 1,), np.int64, bounds[rank], offsets),
            Part("regions/volume", (n,), np.float64, bounds[rank], np.asarray(loc.volume, np.float64))]


def _decision_parts(comm, loc, d):
    segs = np.asarray(loc.seg, np.float64).reshape(-1, 2, d)
    length = float(comm.allreduce(float(np.linalg.norm(segs[:, 1] - segs[:, 0], axis=1).sum())))
    counts = comm.allgather(len(segs))
    off, total = int(sum(counts[:comm.rank])), int(sum(counts))
    return [Part("decision/segments", (total, 2, d), np.float64, off, segs),
            Part("decision/region", (total,), np.int64, off, np.asarray(loc.seg_region, np.int64)),
            Part("decision/classes", (total, 2), np.int32, off, np.asarray(loc.seg_cls, np.int32).reshape(-1, 2))], length
