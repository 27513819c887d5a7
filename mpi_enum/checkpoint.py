"""Checkpoint / resume with exactly-once regions (issue #6; format in ``docs/checkpoint.md``).

The unit of commit is a *finished work item*: an item whose subtree is covered exactly by the
regions it emitted plus the frontier items (children) it handed on.  Every rank appends, for
every item it finishes, first the item's region rows to its ``.regions`` file and then one
checksummed record to its ``.journal`` file.  Nothing is ever rewritten.  On resume the union of
all journals is replayed: items reachable from the generation's roots through committed records
are done, their children that nobody finished are the open items of the next generation, and the
committed region rows are exactly the rows of the accepted records.  A region can therefore be
neither lost (its item is either committed, with its rows, or still open) nor counted twice (an
item finished twice is reported as an error, and a record that is not reachable from the roots,
e.g. a thief's record whose creator's record was lost in a crash, is ignored together with its
rows).

Layout of ``--checkpoint-dir``::

    gen{G}/meta.json        written last by rank 0 at the start of generation G (its presence
                            makes the generation valid): format, network sha256, domain, tol,
                            N, k, L, d, n_ranks, and "frozen": the committed journal lengths of
                            the previous generation, so late writes by a zombie are ignored
    gen{G}/roots.npy        (n, 2+k+words) float64 WorkItem.encode records: the open items at
                            the start of G (generation 0: the single root item)
    gen{G}/rank{R}.regions  fixed-size rows, dtype = RegionBuffer.dtype() (pattern, point,
                            radius, rank), append-only
    gen{G}/rank{R}.journal  frames [u32 length][u32 crc32][payload]; payload[0] = kind:
                            0 header (JSON), 1 item-done record, 2 sync marker (after an fsync)

Integration (the driver loop; ``ck`` is a no-op shell without ``--checkpoint-dir``)::

    from .checkpoint import Checkpoint
    from .stopper import Stopper

    stopper = Stopper(args.time_limit, args.checkpoint_interval)   # as early as possible
    eng = Engine(problem)
    sink = RegionSink(problem, spill_dir)
    ck = Checkpoint.setup(comm, problem, args.checkpoint_dir, resume=args.resume, engine=eng)
    # collective; InputError on every rank (mismatching meta, corrupt checkpoint)
    ck.feed_old_regions(sink.buf)        # committed regions of earlier generations, this rank's share
    base_lc = ck.base_layer_counts()     # earlier generations' layer counts (rank 0), zeros elsewhere
    emit = ck.recorder(sink.buf)         # emit callback: appends to the buffer, keeps the item's rows

    lc0 = eng.stats.layer_counts.copy()
    items, top = top_partition(eng, comm.size, args.split_factor, roots=ck.roots)   # [] if already complete
    if comm.rank == 0:
        for reg in top:
            emit(*reg)
        ck.done(ck.roots, items, emit, eng.stats.layer_counts - lc0)   # the static expansion
    else:
        eng.stats.layer_counts[:] = lc0  # only rank 0 counts the expansion
    queue = [it for i, it in enumerate(items) if i % comm.size == comm.rank]

    while <work: own queue or steal>:
        item = <pop / steal>             # claims must be atomic: exactly one rank finishes an item
        lc0 = eng.stats.layer_counts.copy()
        children = eng.explore(item, emit, budget=budget, poll=poll)   # ALWAYS with a budget
        ck.done(item, children, emit, eng.stats.layer_counts - lc0)
        queue.extend(children)           # publish children only AFTER ck.done
        if stopper.due_checkpoint():
            ck.flush()                   # fsync + sync marker
        if stopper.should_stop():        # agree across ranks via the termination protocol
            break
    ck.close()                           # flush(fsync=True) + close
    layer_counts = eng.stats.layer_counts + base_lc
    # stopped: write the partial result (complete=False, stopped_reason=stopper.reason), exit 3

Every rank calls ``ck.done`` only for items it finished itself; an item stolen from another
rank's queue needs nothing special (its creation is in the victim's record; whoever finishes it
records it done).  Without a checkpoint dir ``ck.roots`` is ``[eng.root_item()]`` and ``done``,
``flush``, ``close``, ``feed_old_regions`` do nothing.  With ``--resume`` and an empty or missing
directory the run starts from scratch; without ``--resume`` a directory that already holds a
checkpoint is an error (never silently overwritten).
"""
from __future__ import annotations

import json
import os
import re
import struct
import time
import zlib
from collections import defaultdict, deque
from dataclasses import dataclass, field

import numpy as np

from .engine import Engine, WorkItem
from .errors import InputError
from .parallel import region_row, region_rows

FORMAT = "mpi_enum.checkpoint"
FORMAT_VERSION = 1

KIND_HEADER = 0
KIND_DONE = 1
KIND_SYNC = 2

_FRAME = struct.Struct("<II")  # payload length, crc32(payload)
_DONE = struct.Struct("<B3xIIIQQI")  # kind, n_done, n_children, stats_len, row_off, n_rows, rows_crc
_SYNC = struct.Struct("<B7xQ")  # kind, rows_written
MAX_PAYLOAD = 1 << 31

_GEN_RE = re.compile(r"^gen(\d+)$")
_RANK_RE = re.compile(r"^rank(\d+)\.journal$")

# meta.json keys that must agree between a checkpoint and the run resuming it
MATCH_KEYS = ("format", "format_version", "network_sha256", "domain", "tol", "N", "k", "L", "d")


class CheckpointError(InputError):
    """The checkpoint directory is inconsistent (a bug or a damaged directory): exit 2."""


# ----------------------------------------------------------------------------- shapes and keys

@dataclass(frozen=True)
class Shape:
    """Sizes that fix the binary layout: N hidden neurons, k domain dim, L layers, d input dim."""

    N: int
    k: int
    L: int
    d: int

    @staticmethod
    def of(problem) -> "Shape":
        return Shape(int(problem.N), int(problem.k), int(problem.L), int(problem.domain.d))

    @property
    def pattern_bytes(self) -> int:
        return (self.N + 7) // 8

    @property
    def item_floats(self) -> int:
        return WorkItem.record_size(self.k, self.N)

    @property
    def row_dtype(self) -> np.dtype:
        return row_dtype(self.pattern_bytes, self.d, self.L)


def row_dtype(pattern_bytes, d, L) -> np.dtype:
    """The region row: identical to :meth:`mpi_enum.results.RegionBuffer.dtype`."""
    return np.dtype([("pattern", np.uint8, (int(pattern_bytes),)), ("point", np.float64, (int(d),)),
                     ("radius", np.float64), ("rank", np.int16, (int(L),))])


def encode_items(items, shape: Shape) -> np.ndarray:
    items = list(items)
    out = np.zeros((len(items), shape.item_floats), dtype=np.float64)
    for i, it in enumerate(items):
        enc = it.encode(shape.k)  # its length grows with the depth: pad to the fixed size
        out[i, :len(enc)] = enc
    return out


def decode_items(arr, shape: Shape) -> list:
    return [WorkItem.decode(np.asarray(r), shape.k) for r in np.asarray(arr).reshape(-1, shape.item_floats)]


def record_key(rec, k) -> bytes:
    """Key of an encoded item record: the node (depth, bits) of the search tree, as
    ``u32 depth`` + ``packbits(bits)`` (independent of the record's padding)."""
    rec = np.ascontiguousarray(rec, dtype=np.float64)
    depth = int(rec[0])
    return struct.pack("<I", depth) + rec[2 + k:].view(np.uint8)[:(depth + 7) // 8].tobytes()


def item_key(item: WorkItem) -> bytes:
    """Key of a WorkItem (equal to :func:`record_key` of its encoding)."""
    packed = np.packbits(np.frombuffer(item.bits, dtype=np.uint8)) if item.depth else b""
    return struct.pack("<I", int(item.depth)) + bytes(packed)


def describe_key(key: bytes, k: int) -> str:
    depth = struct.unpack_from("<I", key)[0]
    bits = np.unpackbits(np.frombuffer(key[4:], dtype=np.uint8))[:depth]
    s = "".join("1" if b else "0" for b in bits)
    return f"depth {depth}, bits {s if len(s) <= 64 else s[:64] + '...'}"


# ----------------------------------------------------------------------------- meta and directories

def meta_for(net, domain, tol, n_ranks=1) -> dict:
    """The meta data a checkpoint must match (usable in the CLI's per-rank ``_validate``)."""
    widths = list(net.hidden_widths)
    return {"format": FORMAT, "format_version": FORMAT_VERSION,
            "network_sha256": str(net.sha256), "domain": domain.to_json(),
            "tol": repr(float(tol)), "N": int(sum(widths)), "k": int(domain.k), "L": len(widths),
            "d": int(domain.d), "n_ranks": int(n_ranks)}


def make_meta(problem, n_ranks=1) -> dict:
    return meta_for(problem.net, problem.domain, problem.tol, n_ranks)


def generation_dir(ckdir, generation) -> str:
    return os.path.join(ckdir, f"gen{int(generation)}")


def list_generations(ckdir):
    """Sorted [(g, valid)] of the gen{G} folders; valid once its meta.json exists."""
    if not os.path.isdir(ckdir):
        return []
    out = []
    for name in os.listdir(ckdir):
        m = _GEN_RE.match(name)
        if m and os.path.isdir(os.path.join(ckdir, name)):
            g = int(m.group(1))
            out.append((g, os.path.exists(os.path.join(ckdir, name, "meta.json"))))
    return sorted(out)


def read_meta(ckdir, generation) -> dict:
    path = os.path.join(generation_dir(ckdir, generation), "meta.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint meta data ({type(exc).__name__})") from None


def _compare_meta(ckdir, generation, meta, expected):
    names = {"network_sha256": "network", "domain": "domain", "tol": "--tol"}
    for key in MATCH_KEYS:
        if key not in expected:
            continue
        a, b = meta.get(key), expected.get(key)
        if key == "tol":
            same = a is not None and float(a) == float(b)
        else:
            same = a == b
        if not same:
            what = names.get(key, key)
            sa, sb = str(a), str(b)
            if len(sa) > 80:
                sa = sa[:77] + "..."
            if len(sb) > 80:
                sb = sb[:77] + "..."
            raise InputError(f"{ckdir}: the checkpoint (gen{generation}) was made with a different {what} "
                             f"({sa} there, {sb} now); resume with the original inputs or use another "
                             f"--checkpoint-dir")


def check_checkpoint_dir(ckdir, expected_meta, resume) -> None:
    """Cheap checks that every rank can run while validating its inputs.  Raises InputError.

    * the path must be a writable directory (or creatable);
    * without ``resume`` it must hold no checkpoint (gen folders);
    * with ``resume`` every valid generation's meta must match ``expected_meta``.
    """
    if os.path.exists(ckdir) and not os.path.isdir(ckdir):
        raise InputError(f"{ckdir}: --checkpoint-dir is not a directory")
    if os.path.isdir(ckdir) and not os.access(ckdir, os.W_OK | os.X_OK):
        raise InputError(f"{ckdir}: --checkpoint-dir is not writable")
    if not os.path.exists(ckdir):
        parent = os.path.dirname(os.path.abspath(ckdir))
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
            raise InputError(f"{ckdir}: cannot create the checkpoint directory ({parent} is not writable)")
    gens = list_generations(ckdir)
    if not resume:
        if gens:
            raise InputError(f"{ckdir}: already holds a checkpoint; pass --resume to continue it, "
                             f"or use an empty --checkpoint-dir")
        return
    for g, valid in gens:
        if valid:
            _compare_meta(ckdir, g, read_meta(ckdir, g), expected_meta)


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(path, data: bytes):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def start_generation(ckdir, generation, meta, roots, shape: Shape, frozen=None) -> str:
    """Create ``gen{G}`` with roots.npy then meta.json (rank 0, before any work).  Returns the dir."""
    os.makedirs(ckdir, exist_ok=True)
    gdir = generation_dir(ckdir, generation)
    os.makedirs(gdir, exist_ok=False)
    import io

    bio = io.BytesIO()
    np.save(bio, encode_items(roots, shape), allow_pickle=False)
    _write_atomic(os.path.join(gdir, "roots.npy"), bio.getvalue())
    m = dict(meta)
    m.update(generation=int(generation), frozen=frozen, n_roots=len(roots),
             created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    _write_atomic(os.path.join(gdir, "meta.json"), json.dumps(m, sort_keys=True, indent=1).encode())
    _fsync_dir(gdir)
    _fsync_dir(ckdir)
    return gdir


def read_roots(ckdir, generation, shape: Shape) -> np.ndarray:
    path = os.path.join(generation_dir(ckdir, generation), "roots.npy")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable roots ({type(exc).__name__})") from None
    return np.asarray(arr, dtype=np.float64).reshape(-1, shape.item_floats)


# ----------------------------------------------------------------------------- the journal (writer)

def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _frame(payload: bytes) -> bytes:
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


class Journal:
    """One rank's append-only journal and regions file for one generation.

    Writes go straight to the OS (``os.write``, no user-space buffer), so a killed process loses
    nothing it has committed; :meth:`flush` adds the fsync (power loss) and a sync marker.
    """

    def __init__(self, ckdir, generation, rank, shape: Shape):
        self.shape = shape
        self.generation = int(generation)
        self.rank = int(rank)
        gdir = generation_dir(ckdir, generation)
        self.journal_path = os.path.join(gdir, f"rank{rank}.journal")
        self.regions_path = os.path.join(gdir, f"rank{rank}.regions")
        self.dtype = shape.row_dtype
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        self._rfd = os.open(self.regions_path, flags, 0o644)
        self._jfd = os.open(self.journal_path, flags, 0o644)
        self.rows_written = 0
        self.records = 0
        self._dirty = False
        hdr = {"format": FORMAT + ".journal", "format_version": FORMAT_VERSION, "generation": self.generation,
               "rank": self.rank, "N": shape.N, "k": shape.k, "L": shape.L, "d": shape.d,
               "item_floats": shape.item_floats, "row_bytes": self.dtype.itemsize}
        _write_all(self._jfd, _frame(bytes([KIND_HEADER]) + json.dumps(hdr, sort_keys=True).encode()))

    # -- the two halves of a commit (kept separate so tests can kill in between)
    def append_rows(self, rows):
        """Append region rows; returns (row offset, count, crc32 of the bytes)."""
        off = self.rows_written
        if rows is None or len(rows) == 0:
            return off, 0, 0
        data = np.ascontiguousarray(rows, dtype=self.dtype).tobytes()
        _write_all(self._rfd, data)
        n = len(rows)
        self.rows_written += n
        self._dirty = True
        return off, n, zlib.crc32(data)

    def append_record(self, done, children, row_off, n_rows, rows_crc, layer_counts_delta=None, stats_delta=None):
        sh = self.shape
        d_arr = encode_items(done, sh)
        c_arr = encode_items(children, sh)
        lc = np.zeros(sh.L, np.int64) if layer_counts_delta is None else np.asarray(layer_counts_delta, np.int64)
        if lc.shape != (sh.L,):
            raise ValueError(f"layer_counts_delta must have shape ({sh.L},), got {lc.shape}")
        st = json.dumps(stats_delta, sort_keys=True).encode() if stats_delta else b""
        payload = b"".join([_DONE.pack(KIND_DONE, len(d_arr), len(c_arr), len(st), int(row_off), int(n_rows),
                                       int(rows_crc)),
                            d_arr.tobytes(), c_arr.tobytes(), lc.tobytes(), st])
        _write_all(self._jfd, _frame(payload))
        self.records += 1
        self._dirty = True

    def item_done(self, item, children, regions_rows=None, layer_counts_delta=None, stats_delta=None):
        """Commit a finished item (or a list of items, e.g. the static expansion's roots).

        ``children``: the unexplored frontier (they become open items); ``regions_rows``: the
        rows emitted while exploring it (structured array of :attr:`dtype`); the layer-count and
        stats deltas of this exploration.  Items listed both as done and as children cancel out.
        """
        single = isinstance(item, WorkItem)
        done = [item] if single else list(item)
        children = list(children)
        if not single and done and children:  # (a node is never its own child)
            dk = {item_key(it) for it in done}
            ck = {item_key(it) for it in children}
            both = dk & ck
            if both:
                done = [it for it in done if item_key(it) not in both]
                children = [it for it in children if item_key(it) not in both]
        n_rows = 0 if regions_rows is None else len(regions_rows)
        if not done and not children and n_rows == 0:
            return
        if not done:
            raise ValueError("a journal record needs at least one finished item")
        off, n, crc = self.append_rows(regions_rows)
        self.append_record(done, children, off, n, crc, layer_counts_delta, stats_delta)

    def flush(self, fsync=True):
        """Make everything durable: fsync the regions then the journal, then a sync marker."""
        if not self._dirty or self._jfd is None:
            return
        if fsync:
            os.fsync(self._rfd)
            os.fsync(self._jfd)
            _write_all(self._jfd, _frame(_SYNC.pack(KIND_SYNC, self.rows_written)))
        self._dirty = False

    def close(self, fsync=True):
        if self._jfd is None:
            return
        self.flush(fsync)
        if fsync:
            os.fsync(self._jfd)
        os.close(self._jfd)
        os.close(self._rfd)
        self._jfd = self._rfd = None


# ----------------------------------------------------------------------------- the journal (reader)

@dataclass
class _Record:
    file: int
    index: int
    done: np.ndarray
    children: np.ndarray
    row_off: int
    n_rows: int
    rows_crc: int
    lc: np.ndarray
    stats: dict


@dataclass
class JournalScan:
    path: str
    header: dict | None
    records: list
    valid_bytes: int  # length of the committed prefix
    file_bytes: int
    notes: list = field(default_factory=list)


def read_journal(path, regions_path, shape: Shape, limit=None, verify="tail", file_index=0) -> JournalScan:
    """Parse the committed prefix of one journal (at most ``limit`` bytes).

    A frame with a bad length or crc ends the prefix (a torn tail).  A record whose rows are not
    all in the regions file, or (``verify="tail"``: after the last sync marker; ``"all"``:
    everywhere) whose rows fail their crc, ends it too.
    """
    try:
        with open(path, "rb") as f:
            data = f.read() if limit is None else f.read(int(limit))
    except OSError as exc:
        raise CheckpointError(f"{path}: unreadable journal ({exc.strerror})") from None
    size = os.path.getsize(path) if limit is None else min(int(limit), os.path.getsize(path))
    try:
        rsize = os.path.getsize(regions_path)
    except OSError:
        rsize = 0
    itemsize = shape.row_dtype.itemsize
    rows_in_file = rsize // itemsize
    sh = shape
    nf = sh.item_floats
    frames = []  # (kind, payload, end)
    pos = 0
    while pos + _FRAME.size <= len(data):
        n, crc = _FRAME.unpack_from(data, pos)
        end = pos + _FRAME.size + n
        if n == 0 or n > MAX_PAYLOAD or end > len(data):
            break
        payload = data[pos + _FRAME.size:end]
        if zlib.crc32(payload) != crc:
            break
        frames.append((payload[0], payload, end))
        pos = end
    scan = JournalScan(path, None, [], 0, size)
    if not frames or frames[0][0] != KIND_HEADER:
        if size:
            scan.notes.append(f"{os.path.basename(path)}: no valid header; ignored ({size} bytes)")
        return scan
    try:
        hdr = json.loads(frames[0][1][1:].decode())
    except ValueError:
        raise CheckpointError(f"{path}: bad journal header") from None
    for key in ("N", "k", "L", "d"):
        if hdr.get(key) != getattr(sh, key):
            raise CheckpointError(f"{path}: journal header {key}={hdr.get(key)} differs from the problem's "
                                  f"{getattr(sh, key)}")
    scan.header = hdr
    valid_end = frames[0][2]
    last_sync = max([i for i, fr in enumerate(frames) if fr[0] == KIND_SYNC], default=-1)
    rf = None
    try:
        for i, (kind, payload, end) in enumerate(frames[1:], start=1):
            if kind == KIND_SYNC:
                valid_end = end
                continue
            if kind != KIND_DONE:
                raise CheckpointError(f"{path}: unknown journal record kind {kind}")
            _, nd, nc, ns, row_off, n_rows, rows_crc = _DONE.unpack_from(payload, 0)
            p = _DONE.size
            need = p + 8 * nf * (nd + nc) + 8 * sh.L + ns
            if need != len(payload):
                raise CheckpointError(f"{path}: journal record {i} has a bad size")
            done = np.frombuffer(payload, np.float64, nd * nf, p).reshape(nd, nf)
            p += 8 * nf * nd
            children = np.frombuffer(payload, np.float64, nc * nf, p).reshape(nc, nf)
            p += 8 * nf * nc
            lc = np.frombuffer(payload, np.int64, sh.L, p).copy()
            p += 8 * sh.L
            stats = json.loads(payload[p:p + ns].decode()) if ns else {}
            if row_off + n_rows > rows_in_file:
                scan.notes.append(f"{os.path.basename(path)}: record {i} points past the end of the regions "
                                  f"file; it and everything after it are ignored")
                break
            if n_rows and (verify == "all" or (verify == "tail" and i > last_sync)):
                if rf is None:
                    rf = open(regions_path, "rb")
                rf.seek(row_off * itemsize)
                if zlib.crc32(rf.read(n_rows * itemsize)) != rows_crc:
                    scan.notes.append(f"{os.path.basename(path)}: record {i} has damaged region rows; it and "
                                      f"everything after it are ignored")
                    break
            scan.records.append(_Record(file_index, i, done, children, int(row_off), int(n_rows), int(rows_crc),
                                        lc, stats))
            valid_end = end
    finally:
        if rf is not None:
            rf.close()
    scan.valid_bytes = valid_end
    if valid_end < size:
        scan.notes.append(f"{os.path.basename(path)}: ignored an uncommitted tail of {size - valid_end} bytes")
    return scan


# ----------------------------------------------------------------------------- resume

@dataclass
class Resume:
    """What :func:`load_checkpoint` found (picklable: rank 0 broadcasts it)."""

    ckdir: str
    shape: Shape
    generation: int  # the number of the generation to start next
    fresh: bool  # no checkpoint at all: start from the root
    open_items: list  # WorkItems still to explore (empty when complete)
    complete: bool
    layer_counts: np.ndarray
    n_regions: int
    stats: dict
    segments: list  # [(regions path, [(row start, count), ...])]
    frozen: dict | None  # committed journal lengths of the last generation, for the next meta
    generations: list = field(default_factory=list)
    n_records: int = 0
    n_ignored_records: int = 0
    notes: list = field(default_factory=list)

    def iter_rows(self, rank=0, size=1, batch=1 << 16):
        """Committed region rows, as structured arrays of at most ``batch`` rows.

        Rank ``rank`` of ``size`` takes the regions files ``rank, rank + size, ...`` (in the order
        of ``segments``), so the ranks together read every committed row exactly once.
        """
        dt = self.shape.row_dtype
        for i, (path, ranges) in enumerate(self.segments):
            if i % size != rank:
                continue
            with open(path, "rb") as f:
                for start, count in ranges:
                    f.seek(start * dt.itemsize)
                    left = count
                    while left > 0:
                        m = min(batch, left)
                        buf = f.read(m * dt.itemsize)
                        if len(buf) != m * dt.itemsize:
                            raise CheckpointError(f"{path}: region rows vanished since the checkpoint was loaded")
                        yield np.frombuffer(buf, dtype=dt)
                        left -= m

    def feed(self, buf, rank=0, size=1) -> int:
        """Append this rank's share of the committed rows to a RegionBuffer; returns the count."""
        n = 0
        for rec in self.iter_rows(rank, size):
            buf.extend(rec["pattern"], rec["point"], rec["radius"], rec["rank"])
            n += len(rec)
        return n


def _merge_ranges(ranges):
    out = []
    for s, n in sorted(ranges):
        if n == 0:
            continue
        if out and out[-1][0] + out[-1][1] == s:
            out[-1] = (out[-1][0], out[-1][1] + n)
        else:
            out.append((s, n))
    return out


def _load_generation(ckdir, g, roots, shape, limits, verify):
    """Replay one generation from its roots.  Returns a dict of its outcome."""
    gdir = generation_dir(ckdir, g)
    k = shape.k
    names = sorted((int(m.group(1)), n) for n in os.listdir(gdir) if (m := _RANK_RE.match(n)))
    scans = []
    for fi, (r, name) in enumerate(names):
        limit = None
        if limits is not None:
            limit = limits.get(name, 0)
        scans.append(read_journal(os.path.join(gdir, name), os.path.join(gdir, f"rank{r}.regions"), shape,
                                  limit=limit, verify=verify, file_index=fi))
    records = [rec for s in scans for rec in s.records]
    claims = defaultdict(list)
    pending = []
    for rid, rec in enumerate(records):
        keys = {record_key(row, k) for row in rec.done}
        pending.append(len(keys))
        for key in keys:
            claims[key].append(rid)
    open_items = {}
    created = set()
    done_by = {}
    queue = deque()
    for row in roots:
        key = record_key(row, k)
        if key in created:
            raise CheckpointError(f"{gdir}/roots.npy: item ({describe_key(key, k)}) listed twice")
        created.add(key)
        open_items[key] = row
        queue.append(key)

    def where(rid):
        rec = records[rid]
        return f"{names[rec.file][1]} record {rec.index}"

    accepted = []
    while queue:
        key = queue.popleft()
        for rid in claims.get(key, ()):
            pending[rid] -= 1
            if pending[rid]:
                continue
            accepted.append(rid)
            rec = records[rid]
            for row in rec.done:
                dk = record_key(row, k)
                if dk in done_by:
                    raise CheckpointError(
                        f"{gdir}: item ({describe_key(dk, k)}) was finished twice ({where(done_by[dk])} and "
                        f"{where(rid)}): its regions would be counted twice; the checkpoint is inconsistent "
                        f"(a bug in the driver's claims)")
                done_by[dk] = rid
                open_items.pop(dk, None)
            for row in rec.children:
                ck_ = record_key(row, k)
                if ck_ in created:
                    raise CheckpointError(
                        f"{gdir}: item ({describe_key(ck_, k)}) was created twice (again by {where(rid)}): "
                        f"the checkpoint is inconsistent (a bug)")
                created.add(ck_)
                open_items[ck_] = row
                queue.append(ck_)
    lc = np.zeros(shape.L, np.int64)
    stats = defaultdict(float)
    per_file = defaultdict(list)
    n_regions = 0
    for rid in accepted:
        rec = records[rid]
        lc += rec.lc
        for key_, v in rec.stats.items():
            if isinstance(v, (int, float)):
                stats[key_] += v
        if rec.n_rows:
            per_file[rec.file].append((rec.row_off, rec.n_rows))
            n_regions += rec.n_rows
    segments = []
    for fi, (r, name) in enumerate(names):
        if per_file.get(fi):
            segments.append((os.path.join(gdir, f"rank{r}.regions"), _merge_ranges(per_file[fi])))
    notes = [n for s in scans for n in s.notes]
    ignored = len(records) - len(accepted)
    if ignored:
        notes.append(f"gen{g}: {ignored} committed record(s) not reachable from the roots (their creator's "
                     f"record was lost); ignored with their regions")
    return {"open": open_items, "lc": lc, "stats": dict(stats), "segments": segments, "n_regions": n_regions,
            "lengths": {names[fi][1]: s_.valid_bytes for fi, s_ in enumerate(scans)},
            "n_records": len(accepted), "n_ignored": ignored, "notes": notes}


def load_checkpoint(ckdir, expected_meta, verify="tail") -> Resume:
    """Replay every generation of ``ckdir`` (rank 0).  Raises InputError / CheckpointError.

    ``expected_meta``: :func:`make_meta` of the run that resumes; network, domain, tol and the
    sizes must match.  An empty or missing directory gives a ``fresh`` Resume.
    """
    shape = Shape(int(expected_meta["N"]), int(expected_meta["k"]), int(expected_meta["L"]),
                  int(expected_meta["d"]))
    gens = list_generations(ckdir)
    next_gen = (gens[-1][0] + 1) if gens else 0
    valid = [g for g, ok in gens if ok]
    empty = Resume(ckdir, shape, next_gen, True, [], False, np.zeros(shape.L, np.int64), 0, {}, [], None)
    if not valid:
        return empty
    metas = {g: read_meta(ckdir, g) for g in valid}
    for g in valid:
        _compare_meta(ckdir, g, metas[g], expected_meta)
    k = shape.k
    open_items = None
    lc = np.zeros(shape.L, np.int64)
    stats = defaultdict(float)
    segments, notes = [], []
    n_regions = n_records = n_ignored = 0
    lengths = None
    for idx, g in enumerate(valid):
        roots = read_roots(ckdir, g, shape)
        if open_items is None:
            if len(roots) != 1 or int(roots[0][0]) != 0:
                raise CheckpointError(f"{generation_dir(ckdir, g)}: the first generation must start from the root "
                                      f"item (was an earlier generation deleted?)")
        else:
            keys = {record_key(r, k) for r in roots}
            if keys != set(open_items) or len(keys) != len(roots):
                raise CheckpointError(f"{generation_dir(ckdir, g)}/roots.npy: does not match the open items of the "
                                      f"previous generation (files changed or deleted?)")
        limits = None
        if idx + 1 < len(valid):
            fz = metas[valid[idx + 1]].get("frozen")
            if not fz or int(fz.get("generation", -1)) != g:
                raise CheckpointError(f"{generation_dir(ckdir, valid[idx + 1])}/meta.json: missing the frozen "
                                      f"lengths of gen{g}")
            limits = {str(n): int(v) for n, v in fz["lengths"].items()}
        out = _load_generation(ckdir, g, roots, shape, limits, verify)
        open_items = out["open"]
        lc += out["lc"]
        for key_, v in out["stats"].items():
            stats[key_] += v
        segments += out["segments"]
        notes += out["notes"]
        n_regions += out["n_regions"]
        n_records += out["n_records"]
        n_ignored += out["n_ignored"]
        lengths = {"generation": g, "lengths": out["lengths"]}
    items = [WorkItem.decode(open_items[key], k) for key in sorted(open_items)]
    return Resume(ckdir, shape, next_gen, False, items, not items, lc, n_regions, dict(stats), segments, lengths,
                  generations=valid, n_records=n_records, n_ignored_records=n_ignored, notes=notes)


# ----------------------------------------------------------------------------- driver helpers

class Recorder:
    """The engine's emit callback: converts a region to a result row (exactly as RegionSink
    does), appends it to the RegionBuffer ``buf`` (if any) and keeps it until :meth:`take`."""

    def __init__(self, domain, shape: Shape, buf=None, keep=True):
        self.dom = domain
        self.buf = buf
        self.keep = keep
        self.dtype = shape.row_dtype
        self._rows = []

    def __call__(self, bits, yc, r, ranks):
        row = region_row(self.dom, bits, yc, r, ranks)
        if self.buf is not None:
            self.buf.append(*row)
        if self.keep:
            self._rows.append(tuple(np.asarray(a)[None] for a in row))

    def batch(self, bits, Y, r, ranks):
        """Many regions at once (the engines' ``emit_batch``)."""
        rows = region_rows(self.dom, bits, Y, r, ranks)
        if self.buf is not None:
            self.buf.extend(*rows)
        if self.keep:
            self._rows.append(rows)

    def take(self) -> np.ndarray:
        """The rows emitted since the last call, as a structured array; clears them."""
        n = sum(len(p[2]) for p in self._rows)
        rows = np.empty(n, dtype=self.dtype)
        if n:
            for j, name in enumerate(("pattern", "point", "radius", "rank")):
                rows[name] = np.concatenate([np.asarray(p[j]) for p in self._rows])
        self._rows = []
        return rows


class Checkpoint:
    """The driver's whole interface (see the module docstring).  Disabled without a directory."""

    def __init__(self, problem, rank=0, size=1, ckdir=None, generation=None, roots=(), resume=None,
                 journal=None):
        self.problem = problem
        self.shape = Shape.of(problem)
        self.rank, self.size = rank, size
        self.dir = ckdir
        self.generation = generation
        self.roots = list(roots)
        self.resume = resume
        self.journal = journal

    @property
    def enabled(self) -> bool:
        return self.dir is not None

    @classmethod
    def setup(cls, comm, problem, ckdir, resume=False, engine=None) -> "Checkpoint":
        """Collective (``comm`` may be None for a serial run).  Rank 0 loads or creates the
        checkpoint and starts a new generation; every rank opens its own journal.  Raises
        InputError (CheckpointError) on every rank when the checkpoint cannot be used."""
        rank = comm.rank if comm is not None else 0
        size = comm.size if comm is not None else 1
        if not ckdir:
            eng = engine or Engine(problem)
            return cls(problem, rank, size, roots=[eng.root_item()])
        shape = Shape.of(problem)
        payload = None
        exc_local = None
        if rank == 0:
            try:
                meta = make_meta(problem, size)
                check_checkpoint_dir(ckdir, meta, resume)
                res = load_checkpoint(ckdir, meta)
                if res.complete:
                    roots, gen = [], None
                else:
                    roots = res.open_items if not res.fresh else [(engine or Engine(problem)).root_item()]
                    gen = res.generation
                    start_generation(ckdir, gen, meta, roots, shape, res.frozen)
                payload = ("ok", res, roots, gen)
            except InputError as exc:
                payload = ("input", str(exc), type(exc) is CheckpointError, None)
            except BaseException as exc:  # a bug: tell the others, then raise it here
                payload = ("bug", f"rank 0 failed while loading {ckdir}: {exc!r}", None, None)
                exc_local = exc
        if comm is not None and size > 1:
            payload = comm.bcast(payload, root=0)
        status, a, b, c = payload
        if status == "input":
            raise (CheckpointError if b else InputError)(a)
        if status == "bug":
            if exc_local is not None:
                raise exc_local
            raise RuntimeError(a)
        res, roots, gen = a, b, c
        journal = Journal(ckdir, gen, rank, shape) if gen is not None else None
        if comm is not None and size > 1:
            comm.Barrier()  # every journal exists before anyone can steal
        return cls(problem, rank, size, ckdir, gen, roots, res, journal)

    # -- before the work
    def feed_old_regions(self, buf) -> int:
        """Append this rank's share of earlier generations' committed regions to ``buf``."""
        if self.resume is None:
            return 0
        return self.resume.feed(buf, self.rank, self.size)

    def base_layer_counts(self) -> np.ndarray:
        """Earlier generations' layer counts on rank 0 (zeros elsewhere): add to the new ones."""
        if self.resume is None or self.rank != 0:
            return np.zeros(self.shape.L, np.int64)
        return self.resume.layer_counts.copy()

    @property
    def old_regions(self) -> int:
        return 0 if self.resume is None else self.resume.n_regions

    @property
    def notes(self) -> list:
        return [] if self.resume is None else list(self.resume.notes)

    # -- during the work
    def recorder(self, buf=None) -> Recorder:
        return Recorder(self.problem.domain, self.shape, buf, keep=self.journal is not None)

    def done(self, item, children, recorder=None, layer_counts_delta=None, stats_delta=None):
        """Commit a finished item (or list of items): its rows (taken from ``recorder``), its
        children (the frontier) and deltas.  Call before publishing the children to others."""
        rows = recorder.take() if recorder is not None else None
        if self.journal is None:
            if self.enabled and (rows is not None and len(rows) or children):
                raise RuntimeError("Checkpoint.done: the checkpoint is complete; there is nothing to explore")
            return
        self.journal.item_done(item, children, rows, layer_counts_delta, stats_delta)

    def flush(self, fsync=True):
        if self.journal is not None:
            self.journal.flush(fsync)

    def close(self):
        if self.journal is not None:
            self.journal.close()
            self.journal = None
