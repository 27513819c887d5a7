"""The result file: this module alone owns the HDF5 layout (CONTRACT §3) and documents it.

Layout, ``format = "mpi_enum.regions"``, ``format_version = 1``
----------------------------------------------------------------
Root attributes (contract): ``format``, ``format_version``, ``n_regions``, ``input_dim``,
``hidden_widths``, ``complete``, ``n_ranks``, ``wall_seconds``, ``network_sha256``, ``domain``
(JSON), ``software`` (JSON), ``tol``.  Extensions: ``io_mode`` ("mpio-collective" or
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
    /domain/x0 (d,), /domain/E (d, k), /domain/G (m, k), /domain/h (m,)
                    the domain in its own coordinates y: x = x0 + E y, G y <= h
    /stats/<name>   (n_ranks,) per-rank statistics: nodes, lps, regions, busy_seconds,
                    idle_seconds, steals_attempted, steals_succeeded, items_given, ...

The parent of a region at layer l is the region of layer l that shares its pattern prefix of
the first ``sum(hidden_widths[:l+1])`` bits, so no parent dataset is needed.

Writing
-------
Per-rank results accumulate in a :class:`RegionBuffer`, which spills to a per-rank scratch file
once it holds more than ``spill_bytes``, so memory stays flat however many regions there are.
:func:`write_result` is collective: offsets come from an exclusive scan of the per-rank counts,
every rank creates every dataset and attribute with identical arguments, and each rank writes its
slice in batches (a rank with fewer batches joins the collective with an empty selection).
Without MPI-enabled h5py the ranks write in turn ("serial-ordered").  The file is written under a
temporary name in the same directory and renamed into place by rank 0 at the very end.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time

import numpy as np

FORMAT = "mpi_enum.regions"
FORMAT_VERSION = 1
BATCH = 1 << 16  # regions per collective write


class RegionBuffer:
    """Append-only per-rank region store with bounded memory (spills to ``spill_dir``)."""

    def __init__(self, pattern_bytes, d, L, spill_dir=None, spill_bytes=64 << 20):
        self.pb, self.d, self.L = int(pattern_bytes), int(d), int(L)
        self.row_bytes = self.pb + 8 * self.d + 8 + 2 * self.L
        self.cap = max(1024, int(spill_bytes) // self.row_bytes)
        self._new_chunk()
        self.count = 0
        self.spill_dir = spill_dir
        self._spill_path = None
        self._spill_file = None
        self.spilled = 0

    def _new_chunk(self):
        self.pat = np.zeros((self.cap, self.pb), np.uint8)
        self.pts = np.zeros((self.cap, self.d), np.float64)
        self.rad = np.zeros(self.cap, np.float64)
        self.rank = np.zeros((self.cap, self.L), np.int16)
        self.n = 0

    def append(self, packed_pattern, point, radius, ranks):
        i = self.n
        self.pat[i] = packed_pattern
        self.pts[i] = point
        self.rad[i] = radius
        self.rank[i] = ranks
        self.n += 1
        self.count += 1
        if self.n == self.cap:
            self._spill()

    def extend(self, pat, pts, rad, rank):
        """Append many rows at once (arrays of equal length)."""
        n, s = len(rad), 0
        while s < n:
            m = min(n - s, self.cap - self.n)
            i = self.n
            self.pat[i : i + m] = pat[s : s + m]
            self.pts[i : i + m] = pts[s : s + m]
            self.rad[i : i + m] = rad[s : s + m]
            self.rank[i : i + m] = rank[s : s + m]
            self.n += m
            self.count += m
            s += m
            if self.n == self.cap:
                self._spill()

    def _record(self, n):
        rec = np.empty(n, dtype=self.dtype())
        rec["pattern"] = self.pat[:n]
        rec["point"] = self.pts[:n]
        rec["radius"] = self.rad[:n]
        rec["rank"] = self.rank[:n]
        return rec

    def dtype(self):
        return np.dtype([("pattern", np.uint8, (self.pb,)), ("point", np.float64, (self.d,)),
                         ("radius", np.float64), ("rank", np.int16, (self.L,))])

    def _spill(self):
        if self.n == 0:
            return
        if self._spill_file is None:
            d = self.spill_dir or tempfile.gettempdir()
            os.makedirs(d, exist_ok=True)
            fd, self._spill_path = tempfile.mkstemp(prefix="mpi_enum_spill_", suffix=".bin", dir=d)
            self._spill_file = os.fdopen(fd, "wb")
        self._spill_file.write(self._record(self.n).tobytes())
        self.spilled += self.n
        self.n = 0

    def batches(self, size=BATCH):
        """Yield (pattern, point, radius, rank) arrays of at most ``size`` regions, in order."""
        if self._spill_file is not None:
            self._spill_file.flush()
            dt = self.dtype()
            with open(self._spill_path, "rb") as f:
                left = self.spilled
                while left > 0:
                    m = min(size, left)
                    rec = np.frombuffer(f.read(m * dt.itemsize), dtype=dt)
                    left -= m
                    yield rec["pattern"], rec["point"], rec["radius"], rec["rank"]
        for s in range(0, self.n, size):
            e = min(self.n, s + size)
            yield self.pat[s:e], self.pts[s:e], self.rad[s:e], self.rank[s:e]

    def arrays(self):
        """Everything as four arrays (for tests and small results)."""
        parts = list(self.batches())
        if not parts:
            return (np.zeros((0, self.pb), np.uint8), np.zeros((0, self.d)), np.zeros(0),
                    np.zeros((0, self.L), np.int16))
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))

    def close(self):
        if self._spill_file is not None:
            self._spill_file.close()
            try:
                os.unlink(self._spill_path)
            except OSError:
                pass
            self._spill_file = None


def software_versions(comm=None):
    import h5py

    info = {"mpi_enum": _version(), "python": platform.python_version(), "numpy": np.__version__,
            "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version, "h5py_mpi": bool(h5py.get_config().mpi)}
    try:
        import scipy

        info["scipy"] = scipy.__version__
    except ImportError:
        pass
    try:
        from importlib.metadata import version

        info["highspy"] = version("highspy")
    except Exception:
        pass
    if comm is not None:
        from mpi4py import MPI

        import mpi4py

        info["mpi4py"] = mpi4py.__version__
        info["mpi_library"] = MPI.Get_library_version().strip().splitlines()[0]
    return info


def _version():
    from . import __version__

    return __version__


def h5py_has_mpi():
    import h5py

    return bool(h5py.get_config().mpi)


REGION_DATASETS = ("pattern", "interior_point", "radius", "affine_rank")  # the order of buf.batches()


def _create_regions(f, total, buf):
    """Create the /regions datasets (identically on every rank in the collective path)."""
    g = f.create_group("regions")
    return [g.create_dataset("pattern", (total, buf.pb), dtype=np.uint8),
            g.create_dataset("interior_point", (total, buf.d), dtype=np.float64),
            g.create_dataset("radius", (total,), dtype=np.float64),
            g.create_dataset("affine_rank", (total, buf.L), dtype=np.int16)]


def _write_batches(dsets, offset, buf, dxpl=None, n_calls=None):
    """Write this rank's rows from ``offset`` on, one call per batch and dataset.

    Collective writes need the same number of calls on every rank: with ``n_calls`` larger than
    this rank's batch count, the extra calls join with an empty selection."""
    it = buf.batches(BATCH)
    pos = offset
    if n_calls is None:
        n_calls = (buf.count + BATCH - 1) // BATCH
    for _ in range(n_calls):
        arrs = next(it, None)
        for ds, a in zip(dsets, arrs if arrs is not None else (None,) * 4):
            _write_rows(ds, pos, a, dxpl)
        if arrs is not None:
            pos += len(arrs[2])


def _write_rows(ds, start, a, dxpl):
    """Write rows [start, start+len(a)) of ``ds``; ``a`` None or empty joins with no selection."""
    import h5py

    fspace = ds.id.get_space()
    if a is None or len(a) == 0:
        fspace.select_none()
        shape = (1,) + ds.shape[1:]
        mspace = h5py.h5s.create_simple(shape)
        mspace.select_none()
        data = np.zeros(shape, dtype=ds.dtype)
    else:
        a = np.ascontiguousarray(a, dtype=ds.dtype)
        count = (len(a),) + ds.shape[1:]
        fspace.select_hyperslab((start,) + (0,) * (ds.ndim - 1), count)
        mspace = h5py.h5s.create_simple(count)
        data = a
    if dxpl is None:
        ds.id.write(mspace, fspace, data)
    else:
        ds.id.write(mspace, fspace, data, dxpl=dxpl)


def _mpi_max():
    from mpi4py import MPI

    return MPI.MAX


def _common(f, meta, total, n_ranks, io_mode, stats_all, layer_counts):
    """Attributes and small datasets: identical on every rank (collective metadata)."""
    net, dom = meta["net"], meta["domain"]
    a = f.attrs
    a["format"] = FORMAT
    a["format_version"] = FORMAT_VERSION
    a["n_regions"] = np.int64(total)
    a["input_dim"] = np.int64(net.input_dim)
    a["hidden_widths"] = np.array(net.hidden_widths, dtype=np.int64)
    a["complete"] = bool(meta.get("complete", True))
    a["stopped_reason"] = str(meta.get("stopped_reason", ""))
    a["n_ranks"] = np.int64(n_ranks)
    a["wall_seconds"] = float(meta.get("wall_seconds", 0.0))
    a["network_sha256"] = str(net.sha256)
    a["network_source"] = os.path.basename(str(net.source))
    a["domain"] = dom.to_json()
    a["software"] = json.dumps(meta.get("software", {}), sort_keys=True)
    a["tol"] = float(meta["tol"])
    a["io_mode"] = io_mode
    a["command_line"] = str(meta.get("command_line", ""))
    a["created"] = str(meta.get("created", ""))
    a["reduced_dim"] = np.int64(dom.k)
    f.create_dataset("layers/n_regions", data=np.asarray(layer_counts, dtype=np.int64))
    for i, (W, b) in enumerate(zip(net.weights, net.biases)):
        f.create_dataset(f"network/W{i}", data=W)
        f.create_dataset(f"network/b{i}", data=b)
    f.create_dataset("domain/x0", data=dom.x0)
    f.create_dataset("domain/E", data=dom.E)
    f.create_dataset("domain/G", data=dom.G.reshape(-1, dom.k))
    f.create_dataset("domain/h", data=dom.h)
    for name in sorted(stats_all):
        f.create_dataset(f"stats/{name}", data=np.asarray(stats_all[name]))


def _test_pause():
    """Test hook: ``MPI_ENUM_TEST_WRITE_DELAY=S`` sleeps S seconds in the middle of the write,
    so that tests can deliver a signal while the file is being written."""
    delay = os.environ.get("MPI_ENUM_TEST_WRITE_DELAY")
    if delay:
        time.sleep(float(delay))


def write_result(path, comm, meta, buf, stats_local, layer_counts_local):
    """Collectively write the result file (every rank calls this with its own buffer).

    ``meta``: dict with ``net``, ``domain``, ``tol``, ``wall_seconds``, ``complete``, ``software``,
    ``command_line``.  ``stats_local``: dict name -> number for this rank.  Returns io_mode.
    """
    import h5py

    size = comm.size if comm is not None else 1
    rank = comm.rank if comm is not None else 0
    counts = comm.allgather(buf.count) if comm is not None else [buf.count]
    total = int(sum(counts))
    offset = int(sum(counts[:rank]))
    names = sorted(stats_local)
    stats_all = {n: (comm.allgather(stats_local[n]) if comm is not None else [stats_local[n]]) for n in names}
    lc = np.asarray(layer_counts_local, dtype=np.int64)
    layer_counts = comm.allreduce(lc) if comm is not None else lc
    meta = dict(meta)
    meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    if comm is not None:
        meta["created"] = comm.bcast(meta["created"], root=0)
    out_dir = os.path.dirname(os.path.abspath(path))
    tmp = None
    if rank == 0:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=out_dir)
        os.close(fd)
        os.unlink(tmp)
    if comm is not None:
        tmp = comm.bcast(tmp, root=0)
    use_mpio = comm is not None and h5py_has_mpi()
    io_mode = "mpio-collective" if use_mpio else "serial-ordered"
    try:
        if use_mpio:
            with h5py.File(tmp, "w", driver="mpio", comm=comm) as f:
                _common(f, meta, total, size, io_mode, stats_all, layer_counts)
                _test_pause()
                dsets = _create_regions(f, total, buf)
                dxpl = h5py.h5p.create(h5py.h5p.DATASET_XFER)
                dxpl.set_dxpl_mpio(h5py.h5fd.MPIO_COLLECTIVE)
                n_calls = comm.allreduce((buf.count + BATCH - 1) // BATCH, op=_mpi_max())
                _write_batches(dsets, offset, buf, dxpl, n_calls)
        else:
            if rank == 0:
                with h5py.File(tmp, "w") as f:
                    _common(f, meta, total, size, io_mode, stats_all, layer_counts)
                    _test_pause()
                    _write_batches(_create_regions(f, total, buf), offset, buf)
            for r in range(1, size):
                comm.Barrier()
                if rank == r:
                    with h5py.File(tmp, "r+") as f:
                        _write_batches([f["regions"][name] for name in REGION_DATASETS], offset, buf)
        if comm is not None:
            comm.Barrier()
        if rank == 0:
            os.replace(tmp, path)
    except BaseException:
        if rank == 0 and tmp and os.path.exists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise
    return io_mode


SUPPORTED_VERSIONS = (FORMAT_VERSION,)


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


def open_result(path):
    """Open a result file read-only after checking that it is one this version can read.

    Raises InputError (one line naming the file) for anything else."""
    import h5py

    from .errors import InputError

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
        }
        if "stats" in f:
            st = {k: f["stats"][k][()].tolist() for k in f["stats"]}
            out["stats"] = st
            busy = np.asarray(st.get("busy_seconds", []), dtype=float)
            if busy.size and busy.mean() > 0:
                out["load_balance_max_over_mean"] = float(busy.max() / busy.mean())
        if out["wall_seconds"] > 0:
            out["regions_per_second"] = out["n_regions"] / out["wall_seconds"]
    return out
