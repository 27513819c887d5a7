"""The result file: this module alone owns the HDF5 layout (CONTRACT §3) and documents it.

Layout, ``format = "mpi_enum.regions"``, ``format_version = 2`` (3 with non-ReLU units, 4 with max units)
--------------------------------------------------------------------------------------------------------
Version 2 adds the optional geometry datasets below (CONTRACT §4); this module still reads
version-1 files (the same layout without them), and ``mpi-enum graph`` turns one into version 2.
Version 3 is written for networks with other units than ReLU (LeakyReLU/PReLU slopes, linear
neurons; :mod:`mpi_enum.model.network`): the same datasets, plus ``/network/slope{l}`` and
``/network/linear{l}``; the pattern then holds one bit per *gated* neuron (linear neurons have
none) and ``hidden_widths`` counts the gated neurons of each layer.  Version 4 is written for
networks with max units (MaxPool, maxout): version 3's datasets plus ``/network/group{l}`` and
``/regions/selector``; a max group's members (its candidates) have one bit each, one-hot: the
group's first maximum.  A ReLU network's file stays version 2, byte for byte the layout it was.
Version 5 is written with ``--points none`` (``points="none"``), whatever the network: the
layout of version 2, 3 or 4 without ``/regions/interior_point`` (8 d bytes a region: 6,272 of
6,287 at d = 784), marked by the root attribute ``interior_points = "none"``; a region's point is
recomputed from its pattern when wanted (:func:`mpi_enum.post.points.recompute_points`, one
Chebyshev LP each; ``verify`` checks a sample of them).
Root attributes (contract): ``format``, ``format_version``, ``n_regions``, ``input_dim``,
``hidden_widths``, ``complete``, ``n_ranks``, ``wall_seconds``, ``network_sha256``, ``domain``
(JSON), ``software`` (JSON), ``tol``.  Extensions: ``interior_points`` ("none", version 5
only), ``io_mode`` ("mpio-collective" or
"serial-ordered"), ``command_line``, ``created`` (UTC ISO time), ``reduced_dim`` (k, the
domain's own dimension), ``stopped_reason`` ("" when complete).

Datasets (contract)::

    /regions/pattern         uint8   (n, ceil(N/8))  packbits of the N hidden bits, layer-major
    /regions/interior_point  float64 (n, d)          strictly interior point, input coordinates
    /regions/radius          float64 (n,)            ball radius around it inside the region
    /regions/affine_rank     int16   (n, L)          rank of the affine map after each hidden layer
    /layers/n_regions        int64   (L,)            regions after each hidden layer

Extensions (self-description, so post-processing needs no other file)::

    /network/W0, /network/b0, ... /network/WL, /network/bL   the network as enumerated
                                                             (.nnet normalisation folded in)
    /network/slope0 ... (float64, width_l), /network/linear0 ... (uint8, width_l)
                    versions 3 and 4: each hidden neuron's slope below 0 and whether it is linear
    /network/group0 ... (int64, width_l)
                    version 4 only: each hidden neuron's max group (-1: none; a group is one
                    contiguous run of neurons of its layer, ids unique within the layer)
    /regions/selector int16 (n, G)  version 4 only: for each of the G max groups (layer-major, in
                    the order of their bits) the position of its selected member within the
                    group, the argmax (ties: the first); the same as the group's one-hot bits
    /domain/x0 (d,), /domain/E (d, k), /domain/G (m, k), /domain/h (m,)
                    the domain in its own coordinates y: x = x0 + E y, G y <= h
    /stats/<name>   (n_ranks,) per-rank statistics: nodes, lps, regions, busy_seconds,
                    idle_seconds, steals_attempted, steals_succeeded, items_given, ...

Geometry (``mpi-enum graph``, written by :mod:`mpi_enum.io.graph_file` into a copy that then
replaces the file)::

    /graph/edges             int64   (E, 2)    pairs (i, j), i < j, of rows sharing a facet, sorted
    /graph/neuron            int32   (E,)      the hidden neuron (layer-major) carrying that facet
                                               (a degenerate facet: the lowest of its neurons)
    /regions/linear_region   int64   (n,)      linear-region id: 0.. in the order of lowest rows
    /regions/volume          float64 (n,)      k-volume in input units (--vertices)
    /vertices/points         float64 (V, d)    every region's vertices, input coordinates (--vertices)
    /vertices/offset         int64   (n + 1,)  region i's vertices: rows offset[i] .. offset[i+1]-1
    /decision/segments       float64 (S, 2, d) decision-boundary segments (2-D domains), input coords
    /decision/region         int64   (S,)      the region each segment crosses
    /decision/classes        int32   (S, 2)    the two predicted classes it separates

with root attributes ``n_edges``, ``n_linear_regions``, ``n_affine_maps`` (distinct
input-to-output maps), ``decision_boundary_length`` (2-D) and ``graph_*`` (facets, LPs,
unmatched facets, one-sided edges, degenerate facets, seconds, ranks, seed).

Storage: /domain arrays over BIG_DOMAIN (64 KiB) bytes are chunked and gzip-compressed (a
d = 784 box's G alone is 9.8 MB raw); with ``compress`` (``--compress``) so are the four /regions
datasets (chunks of about CHUNK_BYTES of rows, byte shuffle).  Both are lossless and invisible to
readers.

The parent of a region at layer l is the region of layer l that shares its pattern prefix of
the first ``sum(hidden_widths[:l+1])`` bits, so no parent dataset is needed.

Writing
-------
Per-rank results accumulate in a :class:`~mpi_enum.io.buffer.RegionBuffer`, which spills to an
anonymous per-rank scratch file once it holds more than ``spill_bytes``, so memory stays flat
however many regions there are.  :func:`write_result` is collective: offsets come from an
exclusive scan of the per-rank counts, every rank creates every dataset and attribute with
identical arguments, and each rank writes its slice in batches (a rank with fewer batches joins
the collective with an empty selection).  Without MPI-enabled h5py the ranks write in turn
("serial-ordered").  The file is written under a temporary name ``.OUT.h5.XXXXXXXX.tmp`` in the
same directory, whose whole space rank 0 reserves (``fallocate``) before HDF5 opens it, and
rank 0 gives it its name at the very end without replacing a file that appeared meanwhile
(unless ``replace``; see :mod:`mpi_enum.io.outfile`).  A write error on any rank ends the whole
job within seconds with one line on stderr and no file at the output path (exit status 4).
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from ..errors import OutputError
from ..phases import NO_PHASES
from .buffer import BATCH, RegionBuffer
from .datasets import CHUNK_BYTES, _create_regions, _packed, _selector_of, _write_batches, _write_rows
from .h5small import SmallWriter, overwrite_attr
from .outfile import install_agreed, io_problem, new_temp, reserve, unlink_quietly
from .provenance import software_versions
from .write_failure import Agreed, fail, injected, pause_for_tests

__all__ = ["BATCH", "FORMAT", "FORMAT_VERSION", "RegionBuffer", "estimate_bytes", "h5py_has_mpi", "open_result",
           "read_summary", "software_versions", "write_result"]

FORMAT = "mpi_enum.regions"
FORMAT_VERSION = 2
UNITS_FORMAT_VERSION = 3  # a network with non-ReLU units (slopes, linear neurons)
GROUPS_FORMAT_VERSION = 4  # a network with max units (one-hot group bits, /regions/selector)
NO_POINTS_FORMAT_VERSION = 5  # written with --points none: no /regions/interior_point
POINTS_CHOICES = ("float64", "none")  # --points


def stores_points(meta) -> bool:
    """Whether a result written with ``meta`` has /regions/interior_point (not ``--points none``)."""
    return meta.get("points", "float64") != "none"


def points_choice(points, have, where) -> str:
    """The ``points`` of a save (``--points``): None gives "float64" if there are points
    (``have``), else "none"; InputError for another value, or for "float64" without points."""
    from ..errors import InputError

    if points is None:
        points = "float64" if have else "none"
    if points not in POINTS_CHOICES:
        raise InputError(f"points must be 'float64' or 'none', got {points!r}")
    if points == "float64" and not have:
        raise InputError(f"{where}: the result holds no interior points (--points none): set interior_points "
                         f"from mpi_enum.post.points.recompute_points(result) first, or save with points='none'")
    return points


def format_version_of(net, points=True) -> int:
    """The format version a result of ``net`` is written with: 2 (ReLU), 3 (slopes, linear
    neurons), 4 (max groups); 5 without points (``points`` False), whatever the network."""
    if not points:
        return NO_POINTS_FORMAT_VERSION
    if net.groups is not None:
        return GROUPS_FORMAT_VERSION
    return FORMAT_VERSION if net.is_relu else UNITS_FORMAT_VERSION


def h5py_has_mpi():
    import h5py

    return bool(h5py.get_config().mpi)


REGION_DATASETS = ("pattern", "interior_point", "radius", "affine_rank")  # the order of buf.batches()


BIG_DOMAIN = 1 << 16  # /domain arrays above this many bytes are stored compressed


def _mpi_max():
    from mpi4py import MPI

    return MPI.MAX


def _common(f, meta, total, n_ranks, io_mode, stats_all, layer_counts, dxpl=None, lead=True):
    """Attributes and small datasets: identical on every rank (collective metadata).  The
    /domain arrays over BIG_DOMAIN bytes (a d = 784 box's G alone is 9.8 MB) are compressed;
    their data goes in with one collective write (``dxpl``) in which ``lead`` supplies it."""
    net, dom = meta["net"], meta["domain"]
    small = SmallWriter(f)
    a = {}  # the root attributes, written below in one pass
    a["format"] = FORMAT
    a["format_version"] = format_version_of(net, stores_points(meta))
    a["n_regions"] = np.int64(total)
    a["input_dim"] = np.int64(net.input_dim)
    a["hidden_widths"] = np.array(net.hidden_widths, dtype=np.int64)
    a["complete"] = bool(meta.get("complete", True))
    a["stopped_reason"] = str(meta.get("stopped_reason", ""))
    a["n_ranks"] = np.int64(n_ranks)
    a["wall_seconds"] = float(meta.get("wall_seconds", 0.0))  # with meta["t0"], _set_wall sets it at the end
    a["network_sha256"] = str(net.sha256)
    a["network_source"] = os.path.basename(str(net.source))
    a["domain"] = dom.to_json()
    a["software"] = json.dumps(meta.get("software", {}), sort_keys=True)
    a["tol"] = float(meta["tol"])
    a["io_mode"] = io_mode
    a["command_line"] = str(meta.get("command_line", ""))
    a["created"] = str(meta.get("created", ""))
    a["reduced_dim"] = np.int64(dom.k)
    if not stores_points(meta):
        a["interior_points"] = "none"
    for key in ("checkpoint_dir", "resume_hint"):  # a partial result: how to continue it
        if meta.get(key):
            a[key] = str(meta[key])
    for key, value in a.items():
        small.attr(key, value)
    small.dataset("layers/n_regions", np.asarray(layer_counts, dtype=np.int64))
    for i, (W, b) in enumerate(zip(net.weights, net.biases)):
        small.dataset(f"network/W{i}", W)
        small.dataset(f"network/b{i}", b)
    if not net.is_relu:
        for l in range(len(net.layer_widths)):
            small.dataset(f"network/slope{l}", net.slope_of(l))
            small.dataset(f"network/linear{l}", net.linear_of(l).astype(np.uint8))
            if net.groups is not None:
                small.dataset(f"network/group{l}", net.group_of(l))
    small.dataset("domain/x0", dom.x0)
    for name, arr in (("E", dom.E), ("G", dom.G.reshape(-1, dom.k))):
        arr = np.ascontiguousarray(arr, dtype=np.float64)
        if arr.nbytes <= BIG_DOMAIN:
            small.dataset(f"domain/{name}", arr)
        else:
            ds = f.create_dataset(f"domain/{name}", arr.shape, dtype=np.float64, **_packed(arr.shape, np.float64))
            _write_rows(ds, 0, arr if lead else None, dxpl)
    small.dataset("domain/h", dom.h)
    for name in sorted(stats_all):
        small.dataset(f"stats/{name}", np.asarray(stats_all[name]))


def estimate_bytes(total, buf, meta, n_stats, n_ranks):
    """An upper bound of the result file's size: the region rows, the network, the domain, the
    statistics, the text attributes and a margin for HDF5's own structures."""
    net, dom = meta["net"], meta["domain"]
    rows = int(total) * (buf.pb + (8 * buf.d if stores_points(meta) else 0) + 8 + 2 * buf.L)
    weights = 8 * sum(int(np.size(W)) + int(np.size(b)) for W, b in zip(net.weights, net.biases))
    domain = 8 * (np.size(dom.x0) + np.size(dom.E) + np.size(dom.G) + np.size(dom.h))
    text = len(dom.to_json()) + len(json.dumps(meta.get("software", {}))) + len(str(meta.get("command_line", "")))
    n_dsets = 4 * len(net.weights) + 4 + 4 + 1 + int(n_stats)
    if net.groups is not None:  # /regions/selector and /network/group{l}
        rows += int(total) * 2 * len(net.group_spans())
        n_dsets += len(net.weights) + 1
    if meta.get("compress"):  # gzip may grow incompressible chunks a little; each chunk is indexed
        rows += rows // 64 + 4096 * (4 + 4 * rows // CHUNK_BYTES)
    return int(rows + weights + domain + 8 * n_stats * n_ranks + 2 * text + 8192 * n_dsets + (256 << 10))


def _set_wall(f, meta, comm):
    """With a start time (``meta["t0"]``, a ``perf_counter`` value): the root attribute
    ``wall_seconds`` = seconds from it until now, the last region row written (the maximum over
    the ranks of ``comm``, collective; None: this rank's).  The attribute that :func:`_common`
    created is overwritten in place (same type and size), just before the file is closed."""
    if "t0" in meta:
        wall = time.perf_counter() - meta["t0"]
        if comm is not None and comm.size > 1:
            wall = comm.allreduce(wall, op=_mpi_max())
        overwrite_attr(f, "wall_seconds", float(wall))


def write_result(path, comm, meta, buf, stats_local, layer_counts_local, *, stats_all=None, write_delay=0.0,
                 replace=False, write_fail=None, note="", t0=None, phases=NO_PHASES):
    """Collectively write the result file (every rank calls this with its own buffer).

    ``meta``: dict with ``net``, ``domain``, ``tol``, ``wall_seconds``, ``complete``, ``software``,
    ``command_line`` (optional: ``stopped_reason``, ``created``, ``points`` ("none": no
    /regions/interior_point, version 5), ``n_ranks``: the ranks that made
    the result, default the communicator's size; ``checkpoint_dir``, ``resume_hint`` for a partial
    result).  ``stats_local``: dict name -> number for this rank; or ``stats_all``: name ->
    per-rank list, already gathered (the same on every rank).  ``replace``: an existing file at
    ``path`` may be replaced (else OutputError; the result is then kept beside it).
    ``write_delay``, ``write_fail``: test hooks.  ``note``: appended to a failure's message.
    ``t0``: the run's start (``perf_counter``); then the attribute ``wall_seconds`` is the time from
    it until the last region row is written (the maximum over ranks; see :func:`_set_wall`), else
    ``meta["wall_seconds"]``.  ``phases``: a :class:`~mpi_enum.phases.Phases` that the steps of
    the write add their seconds to.  Returns io_mode.

    Failures: the whole file's space is reserved by rank 0 before HDF5 opens it, so a full disk
    or a quota raises OutputError on every rank together, with nothing left behind.  A failure
    while writing (an I/O error, the space taken by another program meanwhile) ends the job as
    :func:`~mpi_enum.io.write_failure.fail` says; it never hangs.
    """
    size = comm.size if comm is not None else 1
    rank = comm.rank if comm is not None else 0
    t_start = time.perf_counter()
    names = sorted(stats_local) if stats_all is None else []
    # one collective for what every rank needs to know: row counts, batch counts, layer counts, stats
    mine = (buf.count, buf.n_batches(BATCH), np.asarray(layer_counts_local, dtype=np.int64),
            [stats_local[n] for n in names])
    every = comm.allgather(mine) if comm is not None and size > 1 else [mine]
    counts = [e[0] for e in every]
    total = int(sum(counts))
    offset = int(sum(counts[:rank]))
    n_calls = max(e[1] for e in every)  # collective writes: the same number of calls on every rank
    layer_counts = np.sum([e[2] for e in every], axis=0, dtype=np.int64) if size > 1 else mine[2]
    if stats_all is None:
        stats_all = {n: [e[3][i] for e in every] for i, n in enumerate(names)}
    n_ranks = int(meta.get("n_ranks", size))
    meta = dict(meta)
    meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    if t0 is not None:
        meta["t0"] = float(t0)
    est = estimate_bytes(total, buf, meta, len(stats_all), n_ranks)  # an upper bound, compressed or not
    phases.add("write: counts and statistics gathered", time.perf_counter() - t_start)
    t_start = time.perf_counter()
    tmp, err = None, None
    if rank == 0:  # the space for the whole file, before anything is opened collectively
        try:
            tmp = new_temp(path)
            reserve(tmp, est)
        except OSError as exc:
            folder = os.path.dirname(os.path.abspath(path))
            err = (f"{path}: cannot write the result ({io_problem(exc)}; {est / 2**20:.1f} MiB needed in {folder}); "
                   f"no file was left at {path}{note}")
            unlink_quietly(tmp)
    if comm is not None and size > 1:  # one collective: the temporary name, any error, the creation time
        tmp, err, meta["created"] = comm.bcast((tmp, err, meta["created"]), root=0)
    if err is not None:
        raise OutputError(err)
    phases.add("write: temporary file created, space reserved", time.perf_counter() - t_start)
    use_mpio = comm is not None and h5py_has_mpi()
    io_mode = "mpio-collective" if use_mpio else "serial-ordered"
    args = (meta, total, n_ranks, io_mode, stats_all, layer_counts)
    if use_mpio:
        _write_mpio(tmp, path, comm, args, buf, offset, est, write_delay, write_fail, note, phases, n_calls)
    else:
        _write_serial(tmp, path, comm, args, buf, offset, est, write_delay, write_fail, note)
    t_start = time.perf_counter()
    try:
        install_agreed(comm, tmp, path, replace, note, trim_first=True)
    finally:
        phases.add("write: renamed into place", time.perf_counter() - t_start)
    return io_mode


def _hold_space(comm, tmp, est):
    """Reserve the file's space again once HDF5 has opened (and truncated) it; every rank learns
    the verdict (rank 0 alone makes it).  Raises Agreed."""
    err = None
    if comm is None or comm.rank == 0:
        try:
            reserve(tmp, est)
        except OSError as exc:
            err = exc
    if comm is not None and comm.size > 1:
        err = comm.bcast(err, root=0)
    if err is not None:
        raise Agreed(err)


def _write_mpio(tmp, path, comm, args, buf, offset, est, write_delay, write_fail, note, phases=NO_PHASES,
                n_calls=None):
    import h5py

    f = None
    try:
        with phases("write: file opened (MPI-IO)"):
            f = h5py.File(tmp, "w", driver="mpio", comm=comm)
            dxpl = h5py.h5p.create(h5py.h5p.DATASET_XFER)
            dxpl.set_dxpl_mpio(h5py.h5fd.MPIO_COLLECTIVE)
        with phases("write: attributes, network, domain, statistics"):
            _common(f, *args, dxpl=dxpl, lead=comm.rank == 0)
        pause_for_tests(write_delay)
        with phases("write: region rows"):
            net = args[0]["net"]
            dsets = _create_regions(f, args[1], buf, compress=bool(args[0].get("compress")),
                                    n_groups=len(net.group_spans()), points=stores_points(args[0]))
            _hold_space(comm, tmp, est)
            if n_calls is None:
                n_calls = comm.allreduce(buf.n_batches(BATCH), op=_mpi_max())
            _write_batches(dsets, offset, buf, dxpl, n_calls, lambda: injected(comm.rank, write_fail, tmp),
                           selector=_selector_of(net, net.n_hidden))
            _set_wall(f, args[0], comm)
        with phases("write: file closed"):
            f.close()
            f = None
            if comm.size > 1:
                comm.Barrier()
    except BaseException as exc:
        fail(comm, f, tmp, path, exc, note)


def _write_serial(tmp, path, comm, args, buf, offset, est, write_delay, write_fail, note):
    """h5py without MPI: rank 0 creates the file, then the ranks write their rows in turn."""
    import h5py

    rank = comm.rank if comm is not None else 0
    size = comm.size if comm is not None else 1
    net = args[0]["net"]
    select = _selector_of(net, net.n_hidden)
    names = REGION_DATASETS + (("selector",) if select is not None else ())
    f = None
    try:
        if rank == 0:
            f = h5py.File(tmp, "w")
            reserve(tmp, est)
            _common(f, *args)
            pause_for_tests(write_delay)
            _write_batches(_create_regions(f, args[1], buf, compress=bool(args[0].get("compress")),
                                           n_groups=len(net.group_spans()), points=stores_points(args[0])),
                           offset, buf,
                           after_first=lambda: injected(rank, write_fail, tmp), selector=select)
            if size == 1:
                _set_wall(f, args[0], None)
            f.close()
            f = None
        for r in range(1, size):
            comm.Barrier()
            if rank == r:
                f = h5py.File(tmp, "r+")
                _write_batches([f["regions"][name] if name in f["regions"] else None for name in names], offset, buf,
                               after_first=lambda: injected(rank, write_fail, tmp), selector=select)
                if r == size - 1:  # the last writer: its own time (the others wait for it)
                    _set_wall(f, args[0], None)
                f.close()
                f = None
        if comm is not None:
            comm.Barrier()
    except BaseException as exc:
        fail(comm, f, tmp, path, exc, note)


# version 1: the same layout without the geometry datasets; 3: with non-ReLU units; 4: max units;
# 5: no interior points
SUPPORTED_VERSIONS = (1, FORMAT_VERSION, UNITS_FORMAT_VERSION, GROUPS_FORMAT_VERSION, NO_POINTS_FORMAT_VERSION)


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


def open_result(path):
    """Open a result file read-only after checking that it is one this version can read.

    Raises InputError (one line naming the file) for anything else."""
    import h5py

    from ..errors import InputError

    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a result file")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise InputError(f"{path}: not an HDF5 file") from None
    fmt = _text(f.attrs.get("format", None))
    if fmt != FORMAT:
        f.close()
        raise InputError(f"{path}: not an mpi_enum result file (format attribute is {fmt!r})")
    ver = int(f.attrs.get("format_version", -1))
    if ver not in SUPPORTED_VERSIONS:
        f.close()
        raise InputError(f"{path}: unsupported format_version {ver} (this mpi_enum reads {SUPPORTED_VERSIONS})")
    return f


def read_summary(path):
    """A dict of what ``mpi-enum info`` shows."""
    with open_result(path) as f:
        a = f.attrs
        out = {
            "path": path,
            "format_version": int(a["format_version"]),
            "n_regions": int(a["n_regions"]),
            "input_dim": int(a["input_dim"]),
            "reduced_dim": int(a.get("reduced_dim", a["input_dim"])),
            "hidden_widths": [int(v) for v in a["hidden_widths"]],
            "layer_counts": [int(v) for v in f["layers/n_regions"][()]],
            "complete": bool(a["complete"]),
            "n_ranks": int(a["n_ranks"]),
            "wall_seconds": float(a["wall_seconds"]),
            "tol": float(a["tol"]),
            "io_mode": str(a.get("io_mode", "")),
            "network_sha256": str(a["network_sha256"]),
            "domain": json.loads(a["domain"]),
            "software": json.loads(a["software"]),
            "command_line": str(a.get("command_line", "")),
            "stopped_reason": str(a.get("stopped_reason", "")),
            "interior_points": str(_text(a.get("interior_points", "float64"))),
        }
        for key in ("checkpoint_dir", "resume_hint"):  # partial results only
            if key in a:
                out[key] = str(_text(a[key]))
        if "stats" in f:
            st = {k: f["stats"][k][()].tolist() for k in f["stats"]}
            out["stats"] = st
            busy = np.asarray(st.get("busy_seconds", []), dtype=float)
            if busy.size and busy.mean() > 0:
                out["load_balance_max_over_mean"] = float(busy.max() / busy.mean())
        if out["wall_seconds"] > 0:
            out["regions_per_second"] = out["n_regions"] / out["wall_seconds"]
    return out
