"""The checkpoint directory's layout: format constants, sizes (:class:`Shape`), item keys,
``meta.json``, generations and their roots (see ``docs/checkpoint.md``)."""
from __future__ import annotations

import json
import os
import re
import struct
import time
from dataclasses import dataclass

import numpy as np

from ...engine.work import WorkItem
from ...errors import InputError

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
MATCH_KEYS = ("format", "format_version", "network_sha256", "domain", "tol", "N", "k", "L", "d", "P")


class CheckpointError(InputError):
    """The checkpoint directory is inconsistent (a bug or a damaged directory): exit 2."""


# ----------------------------------------------------------------------------- shapes and keys

@dataclass(frozen=True)
class Shape:
    """Sizes that fix the binary layout: N hidden neurons (the work items' bits), k domain dim, L
    layers, d input dim, P pattern bits of a region row (the gated neurons; N when None)."""

    N: int
    k: int
    L: int
    d: int
    P: int | None = None

    @staticmethod
    def of(problem) -> "Shape":
        return Shape(int(problem.N), int(problem.k), int(problem.L), int(problem.domain.d), int(problem.n_bits))

    @property
    def pattern_bytes(self) -> int:
        return ((self.N if self.P is None else self.P) + 7) // 8

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


def item_keys(rows, k) -> np.ndarray:
    """:func:`record_key` of every encoded item of ``rows`` at once, zero-padded to one
    width (a numpy void array; equal keys iff equal record keys, and sorted in the same order)."""
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    n = len(rows)
    bits = rows[:, 2 + k:].view(np.uint8) if n else np.zeros((0, 8 * (rows.shape[1] - 2 - k)), np.uint8)
    depth = rows[:, 0].astype(np.uint32)
    out = np.empty((n, 4 + bits.shape[1]), np.uint8)
    out[:, :4] = depth.astype("<u4").view(np.uint8).reshape(n, 4)
    out[:, 4:] = bits * (np.arange(bits.shape[1]) < ((depth.astype(np.int64) + 7) // 8)[:, None])
    return out.view(np.dtype((np.void, out.shape[1]))).ravel()


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
    widths = list(net.layer_widths)  # every neuron: the work items' bits
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "network_sha256": str(net.sha256), "domain": domain.to_json(),
            "tol": repr(float(tol)), "N": int(sum(widths)), "k": int(domain.k), "L": len(widths),
            "d": int(domain.d), "n_ranks": int(n_ranks)}
    if net.n_hidden != meta["N"]:  # linear neurons: the region rows hold the gated bits only
        meta["P"] = int(net.n_hidden)
    return meta


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
    """fsync a folder (or a file), quietly."""
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


def _write_atomic(path, data: bytes, sync=True):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


GENERATION_FILES = ("roots.npy", "meta.json")  # in the order they are written


def sync_generation(ckdir, generation):
    """fsync what :func:`start_generation` wrote with ``sync=False`` (its files, in their order,
    then the folders): afterwards a power loss cannot take the generation back."""
    gdir = generation_dir(ckdir, generation)
    for name in GENERATION_FILES:
        _fsync_dir(os.path.join(gdir, name))  # (a file: the same open and fsync)
    _fsync_dir(gdir)
    _fsync_dir(ckdir)


def start_generation(ckdir, generation, meta, roots, shape: Shape, frozen=None, sync=True) -> str:
    """Create ``gen{G}`` with roots.npy then meta.json (rank 0, before any work).  Returns the dir.

    ``sync`` False: no fsync yet (a run that may end before its first checkpoint is due);
    :func:`sync_generation` does it later.  A killed process loses nothing either way (the
    files are complete when meta.json appears); only a power loss before the sync could."""
    os.makedirs(ckdir, exist_ok=True)
    gdir = generation_dir(ckdir, generation)
    os.makedirs(gdir, exist_ok=False)
    import io

    bio = io.BytesIO()
    np.save(bio, encode_items(roots, shape), allow_pickle=False)
    _write_atomic(os.path.join(gdir, "roots.npy"), bio.getvalue(), sync)
    m = dict(meta)
    m.update(generation=int(generation), frozen=frozen, n_roots=len(roots),
             created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    _write_atomic(os.path.join(gdir, "meta.json"), json.dumps(m, sort_keys=True, indent=1).encode(), sync)
    if sync:
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


_GEN_FILE_RE = re.compile(r"^(meta\.json|roots\.npy|rank\d+\.(journal|regions))(\.tmp)?$")


def remove_checkpoint(ckdir) -> bool:
    """Delete the checkpoint's own files (``gen{G}/`` folders holding only checkpoint files)
    once a complete result is safely written; anything else is left alone.  Returns True when
    the folder is left with nothing but possibly its lock file."""
    clean = True
    try:
        names = os.listdir(ckdir)
    except OSError:
        return False
    for name in names:
        path = os.path.join(ckdir, name)
        if name == "lock":
            continue
        if not (_GEN_RE.match(name) and os.path.isdir(path)):
            clean = False
            continue
        files = os.listdir(path)
        if not all(_GEN_FILE_RE.match(f) for f in files):
            clean = False
            continue
        for f in files:
            try:
                os.unlink(os.path.join(path, f))
            except OSError:
                clean = False
        try:
            os.rmdir(path)
        except OSError:
            clean = False
    return clean
