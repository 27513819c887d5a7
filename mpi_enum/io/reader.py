"""The only reader of result files (CONTRACT §3): :func:`load_result` into a :class:`Result`.

Plain h5py, no MPI.  The layout itself is defined by :mod:`mpi_enum.io.results` (the writer);
post-processing (:mod:`mpi_enum.post`) and the Python API read files only through here.

May import: :mod:`mpi_enum.model`, :mod:`mpi_enum.io.results`, numpy, h5py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .results import open_result

#: rows read at a time by :meth:`Result.chunks` (post-processing streams a file in such pieces)
CHUNK_ROWS = 1 << 17
#: the region datasets by their short names
REGION_DATASETS = {"pattern": "regions/pattern", "interior_point": "regions/interior_point",
                   "radius": "regions/radius", "affine_rank": "regions/affine_rank",
                   "selector": "regions/selector"}  # the last: version 4 only


@dataclass
class Result:
    path: str
    attrs: dict
    n: int
    d: int
    widths: list
    packed: np.ndarray  # (n, ceil(N/8)) uint8
    points: np.ndarray  # (n, d); None in a file written with --points none (points_stored False)
    radius: np.ndarray  # (n,)
    ranks: np.ndarray  # (n, L) int
    layer_counts: np.ndarray  # (L,)
    net: object = None  # mpi_enum.network.Network from /network (None if absent)
    domain: object = None  # mpi_enum.domain.Domain from /domain (None if absent)
    spec: dict = field(default_factory=dict)
    has_regions: bool = True
    missing: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)  # /stats/<name>: per-rank lists
    row_start: int = 0  # the rows held are rows row_start .. row_start + n - 1 of the file
    n_total: int = -1  # rows in the file (-1: n)
    geometry: dict = field(default_factory=dict)  # the datasets of `mpi-enum graph` held (see read_geometry)
    selector: np.ndarray = None  # (n, G) int: /regions/selector of a network with max units (version 4)

    @property
    def points_stored(self) -> bool:
        """False for a file written with ``--points none`` (no /regions/interior_point): a region's
        point is then recomputed from its pattern (:func:`mpi_enum.post.points.recompute_points`)."""
        return _attr(self.attrs, "interior_points", "float64") != "none"

    def need_points(self, what):
        """Raise InputError unless the file stores interior points (``what`` needs them)."""
        if not self.points_stored:
            raise InputError(f"{self.path}: {what} needs the interior points, and this file was written with "
                             f"--points none (recompute them with mpi_enum.post.points.recompute_points)")

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

    def chunks(self, names=None, chunk=None, part=None):
        """Yield ``(start, {name: rows start .. start + len - 1})`` over the held rows, read from
        the file ``CHUNK_ROWS`` rows at a time (or from memory when the rows are loaded): bounded
        memory whatever the file's size.  ``affine_rank`` comes as int64, the rest as stored.
        ``names``: default the four contract datasets (without ``interior_point`` in a file
        written with ``--points none``: asking for it then raises InputError), and ``selector``
        with max units.
        ``part = (r, P)``: only the chunks whose index is r modulo P (one process's share)."""
        if names is None:
            names = ("pattern",) + (("interior_point",) if self.points_stored else ()) + ("radius", "affine_rank") + (
                ("selector",) if self.net is not None and self.net.groups is not None else ())
        elif "interior_point" in names:
            self.need_points("reading /regions/interior_point")
        chunk = int(chunk or CHUNK_ROWS)
        r, P = part if part is not None else (0, 1)
        starts = range(r * chunk, self.n, P * chunk)
        if self.packed is not None:
            mem = {"pattern": self.packed, "interior_point": self.points, "radius": self.radius,
                   "affine_rank": self.ranks, "selector": self.selector}
            for s in starts:
                yield s, {k: mem[k][s:s + chunk] for k in names}
            return
        with open_result(self.path) as f:
            dsets = {k: f[REGION_DATASETS[k]] for k in names}
            for s in starts:
                e = min(self.n, s + chunk)
                out = {k: np.asarray(ds[self.row_start + s:self.row_start + e]) for k, ds in dsets.items()}
                if "affine_rank" in out:
                    out["affine_rank"] = out["affine_rank"].astype(np.int64)
                yield s, out

    def bits(self, rows=None):
        """Patterns as a uint8 0/1 matrix (n, N) (or for ``rows``)."""
        p = self.packed if rows is None else self.packed[rows]
        return np.unpackbits(p, axis=1, count=self.N) if p.size else np.zeros((len(p), self.N), np.uint8)


def _attr(a, name, default=None):
    v = a.get(name, default)
    if isinstance(v, bytes):
        v = v.decode()
    return v


def load_result(path, need_network=False, rows=None, regions=True):
    """Read a result file.  Raises InputError for anything that is not a readable result file.

    ``rows``: a slice of the region rows to read (default all): the graph's ranks each read
    their own share.  The datasets of ``mpi-enum graph`` that concern the rows held
    (``/regions/linear_region``, ``/regions/volume``) and the graph's root attributes are in
    ``Result.geometry`` when present.

    ``regions=False``: everything but the region rows (``packed``, ``points``, ``radius``,
    ``ranks`` are None, ``n`` is the number of rows); :meth:`Result.chunks` streams them."""
    from ..model.network import Network, drop_trivial_units

    with open_result(path) as f:
        a = f.attrs
        attrs = {k: _attr(a, k) for k in a.keys()}
        no_points = _attr(a, "interior_points", "float64") == "none"  # --points none (version 5)
        missing = [p for p in ("regions/pattern", "regions/interior_point", "regions/radius", "regions/affine_rank",
                               "layers/n_regions") if p not in f and not (no_points and p == "regions/interior_point")]
        if missing:
            raise InputError(f"{path}: missing dataset(s) {', '.join('/' + m for m in missing)}")
        try:
            widths = [int(w) for w in np.atleast_1d(a["hidden_widths"])]
            d = int(a["input_dim"])
        except KeyError as exc:
            raise InputError(f"{path}: missing root attribute {exc}") from None
        n_total = int(f["regions/radius"].shape[0])
        sel = slice(None) if rows is None else rows
        row_start = sel.indices(n_total)[0]
        n = len(range(*sel.indices(n_total)))
        if regions:
            packed = np.asarray(f["regions/pattern"][sel], dtype=np.uint8)
            pts = None if no_points else np.asarray(f["regions/interior_point"][sel], dtype=np.float64)
            rad = np.asarray(f["regions/radius"][sel], dtype=np.float64)
            rk = np.asarray(f["regions/affine_rank"][sel]).astype(np.int64)
            shapes = {"pattern": packed.shape, "interior_point": (n, d) if pts is None else pts.shape,
                      "affine_rank": rk.shape}
        else:
            packed = pts = rad = rk = None
            shapes = {k: (len(range(*sel.indices(f[REGION_DATASETS[k]].shape[0]))),) + f[REGION_DATASETS[k]].shape[1:]
                      for k in ("pattern", "interior_point", "affine_rank") if REGION_DATASETS[k] in f}
            shapes.setdefault("interior_point", (n, d))
        # only `mpi-enum graph` files have these (8 bytes a row), read whole even with regions=False
        geometry = {name: np.asarray(f[f"regions/{name}"][sel]) for name in ("linear_region", "volume")
                    if f"regions/{name}" in f}
        selector = np.asarray(f["regions/selector"][sel]).astype(np.int64) \
            if regions and "regions/selector" in f else None
        lc = np.asarray(f["layers/n_regions"][()], dtype=np.int64)
        N = sum(widths)
        want = {"pattern": (n, (N + 7) // 8), "interior_point": (n, d), "affine_rank": (n, len(widths))}
        for k in ("pattern", "interior_point", "affine_rank"):
            if len(shapes[k]) != 2 or tuple(shapes[k]) != want[k]:
                raise InputError(f"{path}: /{REGION_DATASETS[k]} has shape {tuple(shapes[k])}, expected {want[k]}")
        net = None
        if "network" in f:
            Ws, bs = [], []
            i = 0
            while f"network/W{i}" in f:
                Ws.append(np.asarray(f[f"network/W{i}"][()], dtype=np.float64))
                bs.append(np.asarray(f[f"network/b{i}"][()], dtype=np.float64))
                i += 1
            if Ws:
                slopes = [np.asarray(f[f"network/slope{l}"][()], np.float64) for l in range(len(Ws) - 1)] \
                    if "network/slope0" in f else None
                linear = [np.asarray(f[f"network/linear{l}"][()]).astype(bool) for l in range(len(Ws) - 1)] \
                    if "network/linear0" in f else None
                if linear is not None and slopes is not None:  # slope_of writes 1 for linear neurons
                    slopes = [np.where(m, 0.0, s) for s, m in zip(slopes, linear)]
                groups = [np.asarray(f[f"network/group{l}"][()]).astype(np.int64) for l in range(len(Ws) - 1)] \
                    if "network/group0" in f else None
                net = Network(Ws, bs, source=path, sha256=str(attrs.get("network_sha256", "")),
                              slopes=slopes, linear=linear, groups=groups)
                drop_trivial_units(net)
                if net.groups is not None and "regions/selector" not in f:
                    raise InputError(f"{path}: missing dataset /regions/selector (the network has max units)")
                if net.groups is not None and selector is not None and \
                        selector.shape != (n, len(net.group_spans())):
                    raise InputError(f"{path}: /regions/selector has shape {selector.shape}, expected "
                                     f"{(n, len(net.group_spans()))}")
        if need_network and net is None:
            raise InputError(f"{path}: the result file has no /network group (written by an older mpi_enum?)")
        try:
            spec = json.loads(attrs.get("domain") or "{}")
        except ValueError:
            spec = {}
        stats = {k: f["stats"][k][()].tolist() for k in f["stats"]} if "stats" in f else {}
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
    return Result(path, attrs, n, d, widths, packed, pts, rad, rk, lc, net, dom, spec, stats=stats,
                  row_start=row_start, n_total=n_total, geometry=geometry, selector=selector)


def _domain_from_arrays(x0, E, G, h, spec):
    from ..model.domain import Domain, _bbox

    d, k = E.shape
    G = G.reshape(-1, k)
    rscale = float(np.linalg.svd(E, compute_uv=False).min()) if k else 1.0
    y_lo = y_hi = None
    if len(G):
        y_lo, y_hi = _bbox(G, h)
    return Domain(str(spec.get("kind", "unknown")), d, k, x0, E, G, h, rscale, y_lo, y_hi, dict(spec))


def domain_from_spec(spec, net):
    """Rebuild the domain from the root attribute ``domain`` (JSON) and the network."""
    from ..model.domain import box_domain, line_domain, plane_domain, polytope_domain, unbounded_domain

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
