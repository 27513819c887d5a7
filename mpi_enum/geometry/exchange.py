"""The hash partition of patterns over the ranks, and the all-to-all lookups built on it.

Every pattern (a packed byte row) has an owner rank, ``pattern_hash(row) % size``, by a hash
that is the same in every process (Python's ``hash`` of bytes is salted per process and would
not be).  :class:`PatternIndex` sends every rank's stored patterns with their global row
numbers to their owners (one ``alltoall``); :meth:`PatternIndex.lookup` sends queries to the
owners and returns, for each, the stored row with that pattern or -1 (two ``alltoall``).

:class:`SerialComm` stands in for a communicator when there is none, so that the same code
runs alone.  No ``mpi4py`` here: the communicator is handed in.

May import: numpy.
"""
from __future__ import annotations

import numpy as np

_MUL = np.uint64(0x9E3779B97F4A7C15)


class SerialComm:
    """The few communicator methods used here, for one process without MPI."""

    rank, size = 0, 1

    def alltoall(self, objs):
        return list(objs)

    def allgather(self, obj):
        return [obj]

    def allreduce(self, obj, op=None):
        return obj

    def bcast(self, obj, root=0):
        return obj

    def Barrier(self):
        pass


def as_comm(comm):
    return SerialComm() if comm is None else comm


def rows_hash(packed):
    """A 64-bit hash of every row of a uint8 matrix (n, b), identical in every process."""
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    n, b = packed.shape
    h = np.full(n, np.uint64(1469598103934665603))
    with np.errstate(over="ignore"):
        for col in range(b):
            h = (h ^ packed[:, col].astype(np.uint64)) * _MUL
            h ^= h >> np.uint64(29)
    return h


def owners(keys, size):
    """Owner rank of every row of ``keys`` (uint8 (n, b))."""
    return (rows_hash(keys) % np.uint64(size)).astype(np.int64) if len(keys) else np.zeros(0, np.int64)


def _split(values, dest, size):
    order = np.argsort(dest, kind="stable")
    bounds = np.searchsorted(dest[order], np.arange(size + 1))
    return [values[order[bounds[r]:bounds[r + 1]]] for r in range(size)], order, bounds


def _void(a):
    a = np.ascontiguousarray(a, dtype=np.uint8)
    return a.view(np.dtype((np.void, max(a.shape[1], 1)))).ravel() if a.shape[1] else np.zeros(len(a), "V1")


class PatternIndex:
    """The stored patterns, hash-partitioned over the ranks of ``comm`` (collective)."""

    def __init__(self, comm, packed, rows):
        self.comm = as_comm(comm)
        size = self.comm.size
        dest = owners(packed, size)
        parts, _, _ = _split(np.arange(len(rows)), dest, size)
        got = self.comm.alltoall([(packed[p], rows[p]) for p in parts])
        keys = np.concatenate([k for k, _ in got]) if got else packed[:0]
        vals = np.concatenate([v for _, v in got]) if got else rows[:0]
        self.width = packed.shape[1]
        v = _void(keys.reshape(-1, self.width))
        order = np.argsort(v)
        self.keys, self.vals = v[order], np.asarray(vals, np.int64)[order]

    def lookup(self, queries):
        """Global row of every query pattern (uint8 (q, b)), -1 where no region has it (collective)."""
        size = self.comm.size
        dest = owners(queries, size)
        parts, order, bounds = _split(np.arange(len(queries)), dest, size)
        got = self.comm.alltoall([queries[p] for p in parts])
        answers = []
        for q in got:
            qv = _void(q.reshape(-1, self.width))
            pos = np.searchsorted(self.keys, qv)
            pos = np.minimum(pos, max(len(self.keys) - 1, 0))
            hit = (self.keys[pos] == qv) if len(self.keys) else np.zeros(len(qv), bool)
            answers.append(np.where(hit, self.vals[pos] if len(self.vals) else -1, -1).astype(np.int64))
        back = self.comm.alltoall(answers)
        out = np.full(len(queries), -1, np.int64)
        for r in range(size):
            out[order[bounds[r]:bounds[r + 1]]] = back[r]
        return out


def route(comm, arrays, dest):
    """Send row ``i`` of every array in ``arrays`` to rank ``dest[i]``; returns the arrays this
    rank receives, concatenated in rank order (collective)."""
    comm = as_comm(comm)
    parts, _, _ = _split(np.arange(len(dest)), np.asarray(dest, np.int64), comm.size)
    got = comm.alltoall([tuple(a[p] for a in arrays) for p in parts])
    return tuple(np.concatenate([g[i] for g in got]) for i in range(len(arrays)))


def count_distinct(comm, keys):
    """The number of distinct rows of ``keys`` (uint8 (n, b)) over all ranks (collective)."""
    comm = as_comm(comm)
    (mine,) = route(comm, (np.ascontiguousarray(keys, np.uint8),), owners(keys, comm.size))
    return int(comm.allreduce(int(len(np.unique(_void(mine)))) if len(mine) else 0))
