"""``mpi-enum verify OUT.h5 NETWORK [--samples N] [--seed S]``: independent checks of a result.

Everything is recomputed from the NETWORK file (not from the enumeration engine) and the domain
stored in the result:

==========================  =================================================================
check                       what it establishes
==========================  =================================================================
file layout                 datasets have consistent shapes; n_regions attribute; unused
                            padding bits of the packed patterns are 0
network matches             input_dim and hidden_widths agree with NETWORK; /network equals
                            NETWORK's weights (another file with the same weights, e.g. an .npz
                            converted from the .onnx the run used, matches); a result without
                            /network must carry NETWORK's file SHA-256 in network_sha256
domain matches spec         /domain arrays equal the domain rebuilt from the ``domain`` JSON
result complete             attribute ``complete`` is true (a partial result fails coverage)
patterns unique             no pattern occurs twice
points in domain            every interior point lies on the domain's affine hull, and its ball
                            (``radius``, input units, inside the hull) lies in the domain
patterns reproduced         a forward pass of NETWORK at each interior point gives its pattern
                            (and /regions/selector, with max units, the argmax of its groups)
radius margins              every hidden neuron j satisfies ``|z_j(x)| >= radius * ||grad z_j||``
                            (a max group's member: ``z_j - z_selected``)
                            (gradient on the region, projected onto the domain's hull), so the
                            whole ball has the pattern
affine ranks                /regions/affine_rank agrees with the singular values of the
                            region's masked affine maps
layer counts                /layers/n_regions equals the number of distinct pattern prefixes
                            (fewer prefixes are accepted only where the samples met regions
                            thinner than tol: a layer-l region may have only thin descendants)
sampled coverage            the patterns of N uniform samples of the domain are all present
                            (a missing pattern is tolerated only if its region's inscribed
                            radius is below the result's ``tol``; every missing one is checked)
volumes sum to domain       (domain dimension k <= 6, bounded, at most VOLUME_MAX_REGIONS regions
                            for k <= 3, VOLUME_MAX_REGIONS_QHULL for k >= 4: one qhull each) the
                            regions' volumes, from their half-spaces (qhull for k >= 3), sum to
                            the domain's volume within 1e-6 relative; where samples fell in
                            regions thinner than tol, the missing share of the volume must match
                            the sampled share (4 standard errors)

Geometry (half-spaces, margins, ranks, volumes) is computed on the network with unit hidden
rows (:meth:`mpi_enum.model.network.Network.normalised`: the same regions and patterns), so no
threshold depends on the scale of a neuron's weights; the patterns themselves come from a
forward pass of the NETWORK file as it is.

Without stored points (``--points none``) the row-by-row checks run on a seeded sample of about
RECOMPUTE_ROWS rows, with points recomputed from their patterns (:mod:`mpi_enum.post.points`).
Memory is bounded whatever the file's size: the rows are read in chunks
(:meth:`mpi_enum.io.reader.Result.chunks`), and uniqueness, layer counts and sampled coverage are
decided one first-layer bucket at a time (:mod:`mpi_enum.post.buckets`, scratch in TMPDIR).
==========================  =================================================================

Exit status 0 only if every check passes (SKIP counts as passing), 1 otherwise; 2 for
unreadable input.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from ..io.reader import domain_from_spec, load_result
from .buckets import buckets, first_layer_hash, packed_prefix_groups
from .share import Share
from .geometry import (Chart, convex_polygon, domain_box_u, forward_abs, group_comparisons, rank_agreement,
                      polygon_area, region_halfspaces, region_maps)
from ..errors import InputError
from .points import centre_of, chebyshev, sampled_with_points

CHUNK = 2048  # rows per chunk of the samples' forward passes and of the volume check
GEOMETRY_FLOATS = 4_000_000  # the row-by-row checks' chunks: about this many floats of affine maps
VOLUME_RTOL = 1e-6
VOLUME_MAX_K = 6  # the volume-sum oracle up to this domain dimension (qhull per region)
VOLUME_MAX_REGIONS = 2_000_000  # and up to this many regions for k <= 3 (polygons; qhull at k = 3)
VOLUME_MAX_REGIONS_QHULL = 100_000  # for 4 <= k <= 6: about 0.3 ms of qhull per region, so <= ~30 s
RECOMPUTE_ROWS = 2000  # --points none: the row-by-row checks run on about this many sampled rows


@dataclass
class Check:
    name: str
    status: str  # PASS, FAIL, SKIP
    detail: str = ""


def _fmt_int(v):
    return f"{int(v):,}"


def geometry_chunk(N, k):
    """Rows per chunk of the row-by-row checks: about GEOMETRY_FLOATS floats of affine maps
    (rows x N x k), at most 16,384 rows."""
    return int(min(16384, max(1, GEOMETRY_FLOATS // max(1, N * max(k, 1)))))


def verify_result(res_path, net_path, samples=100000, seed=0, log=None, comm=None, progress=None):
    """Run all checks; return the list of :class:`Check`.  Raises InputError for bad input.

    ``comm``: an MPI communicator to share the rows among its ranks (every rank calls this and
    gets the same checks); None or one rank: serial.  ``progress``: seconds between progress
    lines of the row-by-row checks on stderr (rank 0; its share times the ranks)."""
    from ..loaders import load_network

    share = Share(comm)
    tick = share.ticker(progress, "verify")

    res = load_result(res_path, regions=False)  # the rows are streamed (Result.chunks, buckets)
    net = load_network(net_path)
    checks = []

    def add(name, ok, detail="", skip=False):
        checks.append(Check(name, "SKIP" if skip else ("PASS" if ok else "FAIL"), detail))
        if log:
            log(f"  {checks[-1].status:4s} {name}: {detail}")

    n, N, L = res.n, res.N, res.L
    # ---------------------------------------------------------------- layout
    problems = []
    n_attr = res.attrs.get("n_regions")
    if n_attr is not None and int(n_attr) != n:
        problems.append(f"n_regions attribute {int(n_attr)} but {n} rows")
    if res.layer_counts.shape != (L,):
        problems.append(f"/layers/n_regions has shape {res.layer_counts.shape}, expected ({L},)")
    pad = ((N + 7) // 8) * 8 - N
    bad_pad = nonfinite = bad_radius = 0
    stored = res.points_stored  # False: --points none, the points are recomputed for a sample below
    for _, ch in res.chunks(("pattern", "radius") + (("interior_point",) if stored else ()), part=share.part):
        if pad and len(ch["pattern"]):
            bad_pad += int(np.any(ch["pattern"][:, -1] & np.uint8((1 << pad) - 1)))
        nonfinite += int(np.any(~np.isfinite(ch.get("interior_point", 0.0))))  # none: --points none
        bad_radius += int(np.sum(~(ch["radius"] > 0)))
    bad_pad, nonfinite, bad_radius = share.sum(bad_pad, nonfinite, bad_radius)
    if bad_pad:
        problems.append("non-zero padding bits in /regions/pattern")
    if nonfinite:
        problems.append("non-finite interior points")
    if bad_radius:
        problems.append(f"{bad_radius} radii are not > 0")
    add("file layout", not problems, "; ".join(problems) or f"{_fmt_int(n)} regions, {N} hidden neurons in {L} layers")

    # ---------------------------------------------------------------- network
    problems = []
    if net.input_dim != res.d or net.hidden_widths != list(res.widths):
        add("network matches", False, f"NETWORK has input dim {net.input_dim}, hidden widths {net.hidden_widths}; "
            f"the result has {res.d}, {list(res.widths)}")
        return checks
    # The network matches when the weights stored in /network equal NETWORK's.  The file hash is
    # only the fallback for results without /network: the same weights in another format (an
    # .npz converted from the .onnx the run used) hash differently but are the same network.
    sha = str(res.attrs.get("network_sha256", ""))
    note = ""
    if res.net is not None:
        same = len(res.net.weights) == len(net.weights) and all(
            W1.shape == W2.shape and np.allclose(W1, W2, rtol=1e-12, atol=0) and np.allclose(b1, b2, rtol=1e-12, atol=0)
            for W1, W2, b1, b2 in zip(res.net.weights, net.weights, res.net.biases, net.biases))
        same_units = same and res.net.same_units(net)
        if not same:
            problems.append("/network differs from the NETWORK file's weights")
        elif not same_units:
            problems.append("/network's activations (slopes, linear neurons, max groups) differ from the NETWORK file's")
        elif sha != net.sha256:
            note = f" (file sha256 differs: {net_path} is another file with the same weights)"
    elif sha != net.sha256:
        problems.append(f"network_sha256 {sha[:12]}... != sha256 of {net_path} {net.sha256[:12]}...")
    add("network matches", not problems, "; ".join(problems) or
        (f"/network identical to {net_path}{note}" if res.net is not None else f"sha256 {net.sha256[:16]}..."))

    # ---------------------------------------------------------------- domain
    dom = res.domain
    try:
        ref = domain_from_spec(res.spec, net)
    except Exception as exc:  # spec missing or not rebuildable
        ref = None
        add("domain matches spec", True, f"cannot rebuild from the domain attribute ({type(exc).__name__})", skip=True)
    if ref is not None:
        same = (ref.k == dom.k and ref.x0.shape == dom.x0.shape and np.allclose(ref.x0, dom.x0, rtol=1e-9, atol=1e-12)
                and ref.E.shape == dom.E.shape and np.allclose(ref.E, dom.E, rtol=1e-9, atol=1e-12)
                and ref.G.shape == dom.G.shape and np.allclose(ref.G, dom.G, rtol=1e-9, atol=1e-12)
                and np.allclose(ref.h, dom.h, rtol=1e-9, atol=1e-12))
        add("domain matches spec", same, f"{res.spec.get('kind')} domain, dimension {dom.k}" if same else
            f"/domain arrays differ from the {res.spec.get('kind')} domain described by the domain attribute")

    complete = bool(res.attrs.get("complete", True))
    add("result complete", complete, "complete" if complete else
        f"partial result (stopped: {res.attrs.get('stopped_reason', '?')}): coverage checks will fail")

    # ---------------------------------------------------------------- unique (and, in the same
    # pass over the first-layer buckets, the distinct prefixes of every layer and which sampled
    # patterns are present)
    sampled = _sample_patterns(res, net, samples, seed) if samples and samples > 0 else None
    tick.say("patterns: uniqueness, prefixes per layer and the samples, by first-layer bucket")
    dup, dup_rows, counts, present = _bucket_pass(res, sampled, share)
    add("patterns unique", dup == 0, f"{dup} duplicate rows (first at rows {dup_rows})" if dup else
        f"{_fmt_int(n)} distinct patterns")

    # ---------------------------------------------------------------- per-region geometry
    chart = Chart(dom)
    tol = float(res.attrs.get("tol", 1e-9))
    smax = float(np.linalg.svd(chart.R, compute_uv=False).max()) if chart.k else 1.0
    lp_slack = max(tol, 1e-9) * 10.0 * smax + 1e-7 * smax  # LP feasibility tolerances, in u units
    bad_hull = bad_dom = bad_pat = bad_margin = bad_rank = 0
    first_bad = {}
    worst_margin = np.inf
    xscale = max(1.0, float(np.abs(dom.x0).max()) if dom.x0.size else 1.0) + smax
    checked, p_sample = 0, (1.0 if stored else min(1.0, RECOMPUTE_ROWS / max(n, 1)))  # rows checked; their share
    for s, ch in res.chunks(chunk=geometry_chunk(N, chart.k), part=share.part):
        tick.rows(len(ch["pattern"]), n)
        ch = ch if stored else sampled_with_points(ch, net, chart, p_sample, [seed, s])  # --points none
        checked += len(ch["pattern"])
        bits = np.unpackbits(ch["pattern"], axis=1, count=N)
        X = ch["interior_point"].astype(np.float64)
        r = ch["radius"].astype(np.float64)
        # on the hull and inside the domain with the ball
        resid = chart.slice_residual(X)
        bh = resid > 1e-9 * xscale
        bad_hull += int(bh.sum())
        U = chart.to_u(X)
        if len(chart.Gu):
            rr = np.where(np.isfinite(r), r, 0.0)
            viol = U @ chart.Gu.T + rr[:, None] - chart.hu
            bd = np.any(viol > lp_slack + 1e-9 * np.abs(chart.hu), axis=1) | (~np.isfinite(r))
            bad_dom += int(bd.sum())
            if bd.any():
                first_bad.setdefault("dom", s + int(np.argmax(bd)))
        # patterns from a forward pass of the NETWORK file
        Z, Zs = forward_abs(net, X)
        zslack = 1e-10 * Zs + 1e-300
        fwd = (Z > 0).astype(np.uint8)
        mism = (fwd != bits) & (np.abs(Z) > zslack)
        bp = np.any(mism, axis=1)
        if "selector" in ch:  # the stored selector is the argmax that the one-hot bits say
            bp |= np.any(ch["selector"] != net.selectors(bits), axis=1)
        bad_pat += int(bp.sum())
        if bp.any():
            first_bad.setdefault("pat", s + int(np.argmax(bp)))
        # margins: |z_j| >= r ||grad_u z_j||, on the network with unit rows (the same regions;
        # no margin threshold then depends on the scale of a neuron's weights)
        Z, Zs = forward_abs(net.normalised(), X)
        zslack = 1e-10 * Zs + 1e-300
        if net.is_relu:
            A, c = region_maps(net, chart, bits)
        else:  # the ranks need every neuron's map (linear ones too), the margins the gated ones'
            A_all, _ = region_maps(net, chart, bits, all_neurons=True)
            A = A_all[:, net.gated_index()] if net.linear is not None else A_all
            A = group_comparisons(net, A, np.zeros(A.shape[:2]), bits)[0]  # max groups: their comparisons
        Ak = np.moveaxis(A, 2, 0)  # (k, n, N), contiguous
        g = np.sqrt(np.einsum("knj,knj->nj", Ak, Ak))
        rg = np.where(g > 0, np.where(np.isfinite(r), r, np.inf)[:, None] * g, 0.0)
        deficit = rg - np.abs(Z)
        allow = g * (1e-6 * np.where(np.isfinite(r), r, 0.0)[:, None] + lp_slack) + zslack
        bm = np.any(deficit > allow, axis=1)
        bad_margin += int(bm.sum())
        if bm.any():
            first_bad.setdefault("margin", s + int(np.argmax(bm)))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(rg > 0, np.abs(Z) / rg, np.inf)
        worst_margin = min(worst_margin, float(ratio.min()) if ratio.size else np.inf)
        # ranks
        if net.is_relu:
            agree = rank_agreement(net, chart, bits, A, ch["affine_rank"])
        else:
            agree = rank_agreement(net, chart, net.gate_factors(bits), A_all, ch["affine_rank"],
                                   widths=net.layer_widths)
        br = ~agree.all(axis=1)
        bad_rank += int((~agree).sum())
        if br.any():
            first_bad.setdefault("rank", s + int(np.argmax(br)))
    bad_hull, bad_dom, bad_pat, bad_margin, bad_rank, checked = share.sum(bad_hull, bad_dom, bad_pat, bad_margin,
                                                                          bad_rank, checked)
    rows_note = "" if stored else f" (points recomputed from the patterns of {_fmt_int(checked)} sampled rows)"
    worst_margin = share.min(worst_margin)
    first_bad = share.first(first_bad)
    if chart.k < res.d:
        add("points on domain hull", bad_hull == 0, f"{bad_hull} interior points off the domain's affine hull"
            if bad_hull else f"all {_fmt_int(checked)} points on the {chart.k}-dimensional slice{rows_note}")
    add("points in domain", bad_dom == 0, f"{bad_dom} balls leave the domain (first: row {first_bad.get('dom')})"
        if bad_dom else f"all {_fmt_int(checked)} balls inside{rows_note}" if len(chart.Gu) else "unbounded domain")
    add("patterns reproduced", bad_pat == 0, f"{bad_pat} interior points give another pattern (first: row "
        f"{first_bad.get('pat')})" if bad_pat else f"all {_fmt_int(checked)} by forward pass of {net_path}{rows_note}")
    add("radius margins", bad_margin == 0, f"{bad_margin} balls cross a neuron's hyperplane (first: row "
        f"{first_bad.get('margin')})" if bad_margin else
        f"min |z|/(r ||grad z||) = {worst_margin:.6g}" if np.isfinite(worst_margin) else "no finite margins")
    add("affine ranks", bad_rank == 0, f"{bad_rank} (region, layer) ranks disagree (first: row {first_bad.get('rank')})"
        if bad_rank else f"all agree with the singular values{rows_note}")

    # ---------------------------------------------------------------- sampled coverage
    thin_hits = 0  # samples that fell in unlisted regions shown to be thinner than tol
    if sampled is not None:
        check, thin_hits = _sample_check(res, net, chart, samples, seed, tol, sampled, present)
        checks.append(check)
        if log:
            log(f"  {checks[-1].status:4s} {checks[-1].name}: {checks[-1].detail}")
    else:
        add("sampled coverage", True, "--samples 0", skip=True)

    # ---------------------------------------------------------------- layer counts
    rec = [int(v) for v in res.layer_counts]
    if rec == counts:
        add("layer counts", True, f"{counts}")
    elif thin_hits and counts[-1] == rec[-1] == n and all(c <= r for c, r in zip(counts, rec)):
        # a layer-l region thicker than tol whose descendants are all thinner than tol has no row:
        # possible only where the samples met such thin regions
        add("layer counts", True, f"/layers/n_regions {rec}; distinct prefixes {counts} (the difference: regions "
            f"whose descendants are all thinner than tol)")
    else:
        add("layer counts", False, f"/layers/n_regions {rec} vs distinct prefixes {counts}")

    # ---------------------------------------------------------------- volumes
    if chart.k > VOLUME_MAX_K:
        add("volumes sum to domain", True, f"domain dimension {chart.k} > {VOLUME_MAX_K}", skip=True)
    elif not dom.bounded or len(chart.Gu) == 0:
        add("volumes sum to domain", True, "unbounded domain", skip=True)
    elif n > (VOLUME_MAX_REGIONS if chart.k <= 3 else VOLUME_MAX_REGIONS_QHULL):
        most = VOLUME_MAX_REGIONS if chart.k <= 3 else VOLUME_MAX_REGIONS_QHULL
        add("volumes sum to domain", True, f"{_fmt_int(n)} regions > {_fmt_int(most)} at dimension {chart.k}: one "
            f"qhull per region would take too long (the other checks cover every row)", skip=True)
    else:
        checks.append(_volume_check(res, net, chart, thin_hits, samples))
        if log:
            log(f"  {checks[-1].status:4s} {checks[-1].name}: {checks[-1].detail}")
    return checks


def _sample_patterns(res, net, samples, seed):
    """``samples`` uniform points of the domain (seeded), their packed patterns and their keys."""
    rng = np.random.default_rng(seed)
    X = res.domain.sample(rng, int(samples))
    P = np.concatenate([np.packbits(net.patterns(X[s:s + CHUNK]).astype(np.uint8), axis=1)
                        for s in range(0, len(X), CHUNK)]) if len(X) else np.zeros((0, (res.N + 7) // 8), np.uint8)
    pv = np.ascontiguousarray(P).view(np.dtype((np.void, P.shape[1]))).ravel()
    return X, P, pv


def _bucket_pass(res, sampled, share):
    """One pass over the first-layer buckets (:mod:`mpi_enum.post.buckets`): duplicate rows (count,
    first five rows), the distinct prefixes of every layer, and which sampled patterns are rows."""
    L, off = res.L, res.offsets
    dup, dup_rows, counts = 0, [], [0] * L
    present = np.zeros(len(sampled[2]) if sampled is not None else 0, bool)
    w0 = int(res.widths[0]) if L else 0
    skey = None
    for b, B, bk in buckets(res, ("pattern",), part=share.part):
        P = bk["pattern"]
        if len(P) == 0:
            continue
        v = np.ascontiguousarray(P).view(np.dtype((np.void, max(P.shape[1], 1)))).ravel()
        _, first, cnt = np.unique(v, return_index=True, return_counts=True)
        dup += int(np.sum(cnt - 1))
        dup_rows.extend(bk["row"][first[cnt > 1]].tolist())
        for l in range(L):
            counts[l] += packed_prefix_groups(P, int(off[l + 1]))[1]
        if sampled is not None:
            if skey is None:
                skey = first_layer_hash(sampled[1], w0) % np.uint64(B)
            mine = skey == np.uint64(b)
            present[mine] = np.isin(sampled[2][mine], v)
    dup = share.sum(dup)
    counts = share.sum_list(counts)
    return dup, sorted(share.concat(dup_rows))[:5], counts, share.any(present)


def _sample_check(res, net, chart, samples, seed, tol, sampled, present):
    X, P, pv = sampled
    smax = float(np.linalg.svd(chart.R, compute_uv=False).max()) if chart.k else 1.0
    miss = ~present
    if not miss.any():
        return Check("sampled coverage", "PASS", f"all {_fmt_int(samples)} samples (seed {seed}) land in listed regions"), 0
    mv, mi, mc = np.unique(pv[miss], return_index=True, return_counts=True)
    Xm = X[miss][mi]
    bits = np.unpackbits(P[miss][mi], axis=1, count=res.N)
    # a missing pattern is acceptable only if its region is thinner than the tolerance
    lim = 2.0 * tol * smax + 1e-12
    real, tiny = 0, 0
    worst = 0.0
    A, c = region_maps(net, chart, bits)
    for i in range(len(bits)):  # every missing pattern: one small LP each
        H, g = region_halfspaces(A, c, bits, chart, i)
        rad = max(0.0, chebyshev(H, g)[1])  # 0: no region at all
        worst = max(worst, rad)
        if rad > lim:
            real += 1
        else:
            tiny += 1
    n_miss = int(miss.sum())
    if real == 0:
        return Check("sampled coverage", "PASS", f"{n_miss} of {_fmt_int(samples)} samples in {tiny} unlisted regions "
                     f"thinner than tol (largest inscribed radius {worst:.3g})"), n_miss
    return Check("sampled coverage", "FAIL", f"{n_miss} of {_fmt_int(samples)} samples fall in {len(bits)} unlisted "
                 f"patterns ({real} with inscribed radius > tol, largest {worst:.3g}); e.g. x = "
                 f"{np.array2string(Xm[0], precision=4, max_line_width=60)}"), 0


def polytope_volume_u(H, g, center, k, box=None):
    """Volume of {H u <= g} (bounded) with a point ``center`` strictly inside (k >= 3: qhull)."""
    if k == 1:
        h = H[:, 0]
        pos, neg = h > 1e-300, h < -1e-300
        hi = np.min(g[pos] / h[pos]) if pos.any() else np.inf
        lo = np.max(g[neg] / h[neg]) if neg.any() else -np.inf
        return max(0.0, float(hi - lo))
    if k == 2:
        return abs(polygon_area(convex_polygon(H, g, box)))
    from scipy.spatial import ConvexHull, HalfspaceIntersection

    from scipy.spatial import QhullError

    gc = g - H @ center  # shift: the centre becomes the origin
    hs = np.hstack([H, -gc[:, None]])
    try:
        pts = HalfspaceIntersection(hs, np.zeros(k)).intersections
    except QhullError:  # qhull's precision failures depend on the order of its input
        pts = HalfspaceIntersection(np.unique(np.round(hs, 13), axis=0), np.zeros(k)).intersections
    return float(ConvexHull(pts).volume)


def _volume_check(res, net, chart, thin_hits=0, samples=0):
    """Region volumes sum to the domain's.  Where ``thin_hits`` of ``samples`` random points fell
    in unlisted regions thinner than tol (a large --tol), the missing share of the volume must
    equal that sampled share within 4 standard errors instead."""
    k = chart.k
    box = domain_box_u(chart)
    try:
        dom_vol = polytope_volume_u(chart.Gu, chart.hu, _domain_centre(chart), k, box)
    except Exception as exc:
        return Check("volumes sum to domain", "FAIL", f"cannot compute the domain's volume ({type(exc).__name__})")
    total = 0.0
    empty = 0
    failed = 0
    for s, ch in res.chunks(("pattern",) + (("interior_point",) if res.points_stored else ()), chunk=CHUNK):
        e = s + len(ch["pattern"])
        bits = np.unpackbits(ch["pattern"], axis=1, count=res.N)
        A, c = region_maps(net, chart, bits)
        U = chart.to_u(ch["interior_point"].astype(np.float64)) if "interior_point" in ch else None
        for i in range(e - s):
            H, g = region_halfspaces(A, c, bits, chart, i)
            centre = U[i] if U is not None else centre_of(H, g) if k >= 3 else None  # k <= 2: unused
            try:
                vol = polytope_volume_u(H, g, centre, k, box)
            except Exception:
                failed += 1
                vol = _bbox_volume(H, g, k)
            if not vol > 0:
                empty += 1
            total += vol
    rel = abs(total - dom_vol) / dom_vol if dom_vol > 0 else np.inf
    ok = rel <= VOLUME_RTOL and empty == 0 and failed == 0
    unit = {1: "length", 2: "area"}.get(k, "volume")
    detail = f"sum of region {unit}s {total:.10g} vs domain {dom_vol:.10g} (relative error {rel:.2e})"
    if not ok and thin_hits and samples and empty == 0 and failed == 0 and total <= dom_vol * (1 + VOLUME_RTOL):
        p = thin_hits / samples
        missing = 1.0 - total / dom_vol
        se = np.sqrt(max(p * (1 - p), 1.0 / samples) / samples)
        ok = abs(missing - p) <= 4.0 * se + VOLUME_RTOL
        detail += (f"; the missing share {missing:.4f} {'matches' if ok else 'does not match'} the share of samples "
                   f"in regions thinner than tol ({p:.4f} +- {se:.4f})")
    if empty:
        detail += f"; {empty} regions have zero {unit}"
    if failed:
        detail += f"; qhull failed on {failed} regions (bounding-box estimate used)"
    return Check("volumes sum to domain", "PASS" if ok else "FAIL", detail)


def _domain_centre(chart):
    from ..model.domain import _chebyshev

    xc, _ = _chebyshev(chart.Gu, chart.hu)
    return xc


def _bbox_volume(H, g, k):
    from ..model.domain import _bbox

    lo, hi = _bbox(H, g)
    return float(np.prod(hi - lo)) if lo is not None else np.inf


def format_table(checks):
    w = max(len(c.name) for c in checks) if checks else 10
    lines = [f"{'check':<{w}}  result  detail", f"{'-' * w}  ------  {'-' * 40}"]
    for c in checks:
        lines.append(f"{c.name:<{w}}  {c.status:<6}  {c.detail}")
    n_fail = sum(c.status == "FAIL" for c in checks)
    lines.append("")
    lines.append("verify: PASSED (all checks)" if n_fail == 0 else f"verify: FAILED ({n_fail} of {len(checks)} checks)")
    return "\n".join(lines)


def main(args, comm=None) -> int:
    samples = getattr(args, "samples", 100000)
    samples = 100000 if samples is None else int(samples)
    if samples < 0:
        raise InputError(f"--samples must be >= 0, got {samples}")
    seed = getattr(args, "seed", 0) or 0
    checks = verify_result(args.out_h5, args.network, samples=samples, seed=seed, comm=comm,
                           progress=getattr(args, "progress", None))
    if comm is None or comm.Get_rank() == 0:
        print(format_table(checks))
        sys.stdout.flush()
    return 0 if all(c.status != "FAIL" for c in checks) else 1
