"""Work queues for the dynamic driver: an MPI one-sided (RMA) backend and a serial stand-in.

Both backends implement the same small interface, used by :mod:`mpi_enum.parallel`:

``put(items)``
    offer work: the backend may publish some of the items (taken from the *front* of the list,
    i.e. the shallowest ones, and removed from it) for other ranks; returns how many it took.
``get()``
    next work for this rank: a list of items (from this rank's own public queue, else stolen
    from another rank), or ``None`` once *all* work of the whole job is finished.
``done(finished, created, regions)``
    accounting: ``finished`` items were completed and ``created`` new items appeared (the
    frontier returned by a budgeted :meth:`Engine.explore`), ``regions`` regions were emitted.

Items are :class:`mpi_enum.engine.WorkItem` objects; on the wire and in the window they are the
fixed-size float64 records of ``WorkItem.encode``.  An item is the unit of commit: an item is
either in a queue, held privately by one rank, or finished, which is what a checkpoint records.

Window layout (one ``MPI.Win.Allocate`` window per rank, displacement unit 8 bytes)
-----------------------------------------------------------------------------------
=========  ======================================================================
word 0     LOCK: 0 = free, r + 1 = held by rank r (changed only by compare-and-swap)
word 1     HEAD: index of the oldest queued item (monotone; written only by lock holders)
word 2     TAIL: one past the newest queued item (monotone except for owner pops; written only by
           the owner)
word 3     OUTSTANDING (rank 0's window only): global count of unfinished items
word 4     REGIONS     (rank 0's window only): global count of emitted regions (progress)
word 5     BUSY        (rank 0's window only): number of ranks that currently hold work
word 6     STOP        (rank 0's window only): nonzero once any rank asked the job to stop
word 7     CREDIT      (rank 0's window only): credit of the finished subtrees (progress estimate)
word 8     LAYER1      (rank 0's window only): first-layer cells found so far (progress)
word 9     reserved
word 10... ring of CAP records of R float64 words; item i lives in slot i mod CAP: the item's
           ``WorkItem.encode`` record, then its credit (one word)
=========  ======================================================================

All header words are accessed only with accumulate-class atomics (``Compare_and_swap``,
``Fetch_and_op``, ``Get_accumulate``, ``Accumulate`` with ``REPLACE``/``SUM``/``NO_OP``), so
every access to them is atomic with respect to every other (MPI-3 §11.7.1).  Record payloads are
moved with ``Put``/``Get``.  Every rank holds a ``Lock_all`` (shared) epoch on the window for the
whole run, and completes operations with ``Flush``.  MPICH over UCX makes no passive-target
progress at a busy target, so the engine calls :meth:`RmaWork.poll` every few nodes
(``comm.Iprobe``), which runs the progress engine; its cost is measured (``poll_seconds``).

Queue protocol (owner pushes/pops at TAIL, thieves take at HEAD)
----------------------------------------------------------------
* **push** (owner only, no lock): read HEAD atomically (a stale value is smaller than the true
  one, so the computed free space ``CAP - (TAIL - HEAD)`` is an *under*-estimate: the owner never
  overwrites a slot that a thief may still read, because a thief advances HEAD only *after* its
  Get has completed); ``Put`` the records into slots ``TAIL ... TAIL+m-1``; ``Flush``; then
  atomically store ``TAIL + m``.  A thief that reads the new TAIL therefore finds the payload
  complete (the Put was flushed before the TAIL store was issued).
* **pop** (owner) and **steal** (thief) both take the queue's LOCK word with
  ``Compare_and_swap(0 -> rank+1)`` + ``Flush``, and release it with an atomic ``REPLACE 0`` +
  ``Flush``.  Between these, the holder reads HEAD and TAIL atomically, and is the only one that
  may *remove* items: the owner decrements TAIL by one (taking the newest, deepest item), a thief
  Gets up to half (at most ``max_steal``) of the oldest, shallowest items, flushes the Get and
  then advances HEAD.  Because removals are serialised by the lock and a concurrent push only
  appends beyond the TAIL that the holder read, no item is ever taken twice or lost: the classic
  owner-versus-thief race on the last item is decided by the lock.  The lock is held for a
  constant number of RMA round trips; a thief that finds it taken counts a failed attempt and
  moves on to another victim (it never spins on a remote lock).  The owner spins on its own lock
  while polling MPI, which also serves the thief's requests, so there is no deadlock.
  Before locking, a thief reads HEAD/TAIL without the lock as a hint and skips empty victims.

Termination (why no rank can quit while work exists or is in flight)
-------------------------------------------------------------------
Rank 0's OUTSTANDING word ``G`` counts unfinished items.  It starts at the number of items of the
static partition (every rank computes the same partition, rank 0 stores the count before the
window opens).  Each rank keeps a local delta ``d`` (created minus finished since its last
update) and adds it to ``G`` with one atomic ``Accumulate(SUM)``:

* a rank sends ``d`` and *flushes* it immediately whenever ``d > 0`` (before any of the new items
  is published to its queue, and indeed before it explores any of them); negative ``d`` (only
  finished items) may be sent late, at the latest before the rank checks for termination.

Let T be the true number of unfinished items (in queues, in private stacks, being explored, or
in flight inside a steal).  An item is created only as a child of an unfinished item held by the
creating rank, and the parent stays unfinished until the same atomic update that counts its
children.  Hence every applied update keeps ``G >= T``: positive deltas are applied before the
items they count can be finished by anyone, and deferred negative deltas only make ``G`` larger.
A stolen item never leaves the count while it travels (moving an item is not finishing it).  So
``G == 0`` implies ``T == 0``, and since no item can be created without an unfinished parent,
``T`` stays 0: every rank that reads ``G == 0`` (an atomic read of rank 0's word, after flushing
its own delta to 0) may stop.  Conversely when T reaches 0 every rank has flushed its delta
(a rank flushes before it looks for work), so G reaches 0 and every idle rank eventually
sees it: the protocol terminates.

Progress: REGIONS, BUSY, CREDIT and LAYER1 ride on the same atomic update as OUTSTANDING
(element-wise atomic).  The static items share a fixed total credit (``driver.CREDIT``); an
explored item passes its credit on to its children, and a finished subtree's credit is added to
CREDIT, so CREDIT / total estimates the fraction of the work done (rank 0 prints it with
``--progress``; it reaches 1 exactly at the end).

Stopping early (``--time-limit``, signals; for checkpoint/resume): a rank that wants to stop
sets STOP with an atomic ``MAX``; every rank learns it from the same ``Get_accumulate`` that
sends its counters (at least every ``flush_interval`` seconds while busy, every backoff round
while idle), finishes the item at hand (the engine returns at the next budget boundary), and
leaves the loop.  Items still queued or held stay *open*; they are exactly what a checkpoint
must record (an item is the unit of commit), and the result is marked incomplete.
"""
from __future__ import annotations

import random
import sys
import time

import numpy as np

from ..console import say

from ..engine.work import WorkItem

LOCK, HEAD, TAIL, G_OUT, G_REG, G_BUSY, G_STOP, G_CREDIT, G_L1 = 0, 1, 2, 3, 4, 5, 6, 7, 8
HDR = 10
TOTAL_CREDIT = 1 << 52  # driver.CREDIT: what the static items share


def progress_line(elapsed, regions, old_regions, credit, l1, busy, size, open_items):
    """One ``--progress`` line: this run's regions and rate (a resumed run's checkpoint regions
    are counted apart), the estimated fraction of the work done with the time it implies, and
    the first-layer cells found so far."""
    frac = min(1.0, max(0.0, credit / TOTAL_CREDIT))
    eta = ""
    if 0.01 <= frac < 1.0:
        eta = f", ~{elapsed * (1 - frac) / frac:.0f} s left"
    old = f" (+{old_regions} from the checkpoint)" if old_regions else ""
    return (f"mpi-enum: progress {elapsed:8.1f} s  {regions} regions{old}  {regions / max(elapsed, 1e-9):.1f} "
            f"regions/s  ~{100 * frac:.1f}% done (estimate{eta})  {l1} first-layer cells  {busy}/{size} ranks busy  "
            f"{max(open_items, 0)} items open")



class SerialWork:
    """The same interface without MPI: one process, one queue (for tests and ``P == 1``)."""

    size = 1
    rank = 0

    def __init__(self, items=(), low=4, progress=None, count=None, log=None, l1=0, old_regions=0):
        self.q = list(items)  # public queue; front = oldest
        self.credit, self.l1, self.old_regions = 0, int(l1), int(old_regions)
        self.progress = progress  # seconds between progress lines (None: quiet)
        self.count = count  # callable: regions found so far (progress lines only)
        self.log = log
        self.t0 = self.last_progress = time.perf_counter()
        self.low = low
        self.last_q = 0
        self.stopped = False
        self.outstanding = len(self.q)
        self.regions = 0
        self.stats = {"steals_attempted": 0, "steals_succeeded": 0, "items_given": 0, "poll_seconds": 0.0,
                      "idle_seconds": 0.0, "items_published": 0}

    def put(self, items):
        self.last_q = len(self.q)
        m = min(len(items), max(0, self.low - len(self.q)))
        if m:
            self.q.extend(items[:m])
            del items[:m]
            self.stats["items_published"] += m
        return m

    def get(self):
        if self.stopped:
            return None
        if self.q:
            return [self.q.pop()]
        assert self.outstanding == 0, f"serial work: {self.outstanding} items unaccounted for"
        return None

    def done(self, finished=0, created=0, regions=0, credit=0, l1=0):
        self.outstanding += created - finished
        self.regions += regions
        self.credit += credit
        self.l1 += l1

    def poll(self):
        if not self.progress:
            return
        now = time.perf_counter()
        if now - self.last_progress >= self.progress:
            self.last_progress = now
            reg = self.count() if self.count is not None else self.regions
            el = now - self.t0
            say(progress_line(el, reg, self.old_regions, self.credit, self.l1, 1, 1, self.outstanding), self.log)

    def request_stop(self):
        self.stopped = True

    def close(self):
        pass


class RmaWork:
    """Distributed work queues in an MPI RMA window (see the module docstring)."""

    def __init__(self, comm, record_words, k, my_items, n_items_total, regions0=0, low=4, max_steal=8,
                 cap=None, progress=None, seed=0, backoff=(2e-5, 2e-3), flush_interval=0.05, log=None, l1=0,
                 old_regions=0):
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = comm
        self.rank, self.size = comm.rank, comm.size
        self.R = int(record_words) + 1  # the item's record, then its credit
        self.old_regions = int(old_regions)
        self.k = int(k)
        self.low = int(low)
        self.last_q = 0
        self.max_steal = int(max_steal)
        self.cap = int(cap or max(1024, 2 * len(my_items) + 64))
        self.cap = comm.allreduce(self.cap, op=MPI.MAX)  # same layout everywhere
        self.win = MPI.Win.Allocate(8 * (HDR + self.cap * self.R), 8, comm=comm)
        mem = np.frombuffer(self.win.tomemory(), dtype=np.uint8)
        self.hdr = mem[: 8 * HDR].view(np.int64)
        self.ring = mem[8 * HDR:].view(np.float64).reshape(self.cap, self.R)
        self.hdr[:] = 0
        self.ring[:] = 0.0
        n0 = min(len(my_items), self.cap)
        for i, it in enumerate(my_items[:n0]):
            self.ring[i] = self._encode(it)
        self.hdr[TAIL] = n0
        self.leftover = list(my_items[n0:])  # did not fit: the driver keeps them privately
        if self.rank == 0:
            self.hdr[G_OUT] = n_items_total
            self.hdr[G_REG] = regions0
            self.hdr[G_BUSY] = self.size
            self.hdr[G_L1] = int(l1)
        self.stats_n0 = n0
        self.tail = n0  # TAIL is written only by this rank: keep it locally too
        comm.Barrier()
        self.win.Lock_all(MPI.MODE_NOCHECK)
        self.win.Sync()  # local initialisation is visible to RMA (unified and separate models)
        self._i1 = np.zeros(1, np.int64)
        self._i1b = np.zeros(1, np.int64)
        self._r1 = np.zeros(1, np.int64)
        self._r3 = np.zeros(3, np.int64)
        self._z3 = np.zeros(3, np.int64)
        self._d6 = np.zeros(6, np.int64)
        self._r6 = np.zeros(6, np.int64)
        self._z6 = np.zeros(6, np.int64)
        self.stopped = False
        self.delta = 0
        self.dregions = 0
        self.dbusy = 0
        self.dcredit = 0
        self.dl1 = 0
        self.busy = True
        self.last_flush = time.perf_counter()
        self.flush_interval = flush_interval
        self.rng = random.Random(1000003 * (seed + 1) + self.rank)
        self.backoff = backoff
        self.progress = progress
        self.t0 = time.perf_counter()
        self.last_progress = self.t0
        self.log = log or sys.stderr
        self.stats = {"steals_attempted": 0, "steals_succeeded": 0, "items_given": 0, "items_stolen": 0,
                      "poll_seconds": 0.0, "polls": 0, "idle_seconds": 0.0, "items_published": self.stats_n0,
                      "self_pops": 0, "lock_contention": 0}

    def _encode(self, it):
        rec = np.empty(self.R, np.float64)
        rec[:-1] = it.encode(self.k, self.R - 1)
        rec[-1] = float(getattr(it, "credit", 0))
        return rec

    def _decode(self, rec):
        it = WorkItem.decode(rec[:-1], self.k)
        it.credit = int(rec[-1])
        return it

    # -------------------------------------------------------------- atomics
    def _read(self, target, disp):
        self.win.Fetch_and_op(self._i1b, self._r1, target, disp, self.MPI.NO_OP)
        self.win.Flush(target)
        return int(self._r1[0])

    def _store(self, target, disp, value):
        self._i1[0] = value
        self.win.Accumulate(self._i1, target, (disp, 1, self.MPI.INT64_T), self.MPI.REPLACE)
        self.win.Flush(target)

    def _try_lock(self, target):
        self._i1[0] = self.rank + 1
        self._i1b[0] = 0
        self.win.Compare_and_swap(self._i1, self._i1b, self._r1, target, LOCK)
        self.win.Flush(target)
        return int(self._r1[0]) == 0

    def _unlock(self, target):
        self._store(target, LOCK, 0)

    def _get_records(self, target, start, m):
        """Get records [start, start+m) of ``target``'s ring (handles wrap-around)."""
        out = np.empty((m, self.R), np.float64)
        s = start % self.cap
        first = min(m, self.cap - s)
        self.win.Get(out[:first], target, (HDR + s * self.R, first * self.R, self.MPI.DOUBLE))
        if first < m:
            self.win.Get(out[first:], target, (HDR, (m - first) * self.R, self.MPI.DOUBLE))
        self.win.Flush(target)
        return out

    # -------------------------------------------------------------- interface
    def put(self, items):
        """Publish the shallowest items (front of ``items``) while the queue holds < ``low``."""
        if not items:
            return 0
        head = self._read(self.rank, HEAD)
        q = self.tail - head
        self.last_q = q
        m = min(len(items), self.low - q, self.cap - q)
        if m <= 0:
            return 0
        self._send(force=self.delta > 0)  # counts of these items must be global before publishing
        recs = np.stack([self._encode(it) for it in items[:m]])
        s = self.tail % self.cap
        first = min(m, self.cap - s)
        self.win.Put(recs[:first], self.rank, (HDR + s * self.R, first * self.R, self.MPI.DOUBLE))
        if first < m:
            self.win.Put(recs[first:], self.rank, (HDR, (m - first) * self.R, self.MPI.DOUBLE))
        self.win.Flush(self.rank)
        self.tail += m
        self._store(self.rank, TAIL, self.tail)
        del items[:m]
        self.stats["items_published"] += m
        return m

    def _pop_own(self):
        if self._read(self.rank, HEAD) >= self.tail:
            return None
        while not self._try_lock(self.rank):
            self.stats["lock_contention"] += 1
            self.poll()
        try:
            head = self._read(self.rank, HEAD)
            if head >= self.tail:
                return None
            self.tail -= 1
            self._store(self.rank, TAIL, self.tail)
            rec = self._get_records(self.rank, self.tail, 1)[0]
        finally:
            self._unlock(self.rank)
        self.stats["self_pops"] += 1
        return self._decode(rec)

    def _steal(self, victim):
        """One steal attempt; returns a list of items (possibly empty)."""
        self.stats["steals_attempted"] += 1
        self.win.Get_accumulate(self._z3, self._r3, victim, (LOCK, 3, self.MPI.INT64_T), self.MPI.NO_OP)
        self.win.Flush(victim)
        if self._r3[TAIL] - self._r3[HEAD] <= 0:
            return []
        if not self._try_lock(victim):
            self.stats["lock_contention"] += 1
            return []
        try:
            head = self._read(victim, HEAD)
            tail = self._read(victim, TAIL)
            n = tail - head
            if n <= 0:
                return []
            m = min(self.max_steal, (n + 1) // 2)
            recs = self._get_records(victim, head, m)  # flushed before HEAD moves
            self._store(victim, HEAD, head + m)
        finally:
            self._unlock(victim)
        self.stats["steals_succeeded"] += 1
        self.stats["items_stolen"] += m
        return [self._decode(r) for r in recs]

    def get(self):
        if self.stopped:
            return None
        it = self._pop_own()
        if it is not None:
            return [it]
        # idle: become a thief
        t_idle = time.perf_counter()
        self._set_busy(False)
        self._send(force=True)
        delay = self.backoff[0]
        others = [r for r in range(self.size) if r != self.rank]
        try:
            while True:
                if others:
                    order = others[:]
                    self.rng.shuffle(order)
                    for v in order[: max(1, min(len(order), 4))]:
                        got = self._steal(v)
                        if got:
                            self._set_busy(True)
                            self._send(force=True)
                            return got
                if self._read(0, G_OUT) == 0:
                    return None
                self._send(force=True)  # also learns about a stop request
                if self.stopped:
                    return None
                self._maybe_progress()
                time.sleep(delay * (0.5 + self.rng.random()))
                delay = min(2 * delay, self.backoff[1])
        finally:
            self.stats["idle_seconds"] += time.perf_counter() - t_idle

    def done(self, finished=0, created=0, regions=0, credit=0, l1=0):
        self.delta += created - finished
        self.dregions += regions
        self.dcredit += credit
        self.dl1 += l1
        self._send(force=self.delta > 0)

    def _set_busy(self, b):
        if b != self.busy:
            self.dbusy += 1 if b else -1
            self.busy = b

    def _send(self, force=False):
        now = time.perf_counter()
        if not force and now - self.last_flush < self.flush_interval:
            return
        self._d6[:] = (self.delta, self.dregions, self.dbusy, 0, self.dcredit, self.dl1)
        self.win.Get_accumulate(self._d6, self._r6, 0, (G_OUT, 6, self.MPI.INT64_T), self.MPI.SUM)
        self.win.Flush(0)
        self.delta = self.dregions = self.dbusy = self.dcredit = self.dl1 = 0
        if self._r6[3]:
            self.stopped = True
        self.last_flush = now

    def request_stop(self):
        """Ask every rank to stop after its current item (see the module docstring)."""
        self._i1[0] = 1
        self.win.Accumulate(self._i1, 0, (G_STOP, 1, self.MPI.INT64_T), self.MPI.MAX)
        self.win.Flush(0)
        self.stopped = True

    def poll(self):
        t = time.perf_counter()
        self.comm.Iprobe()
        t1 = time.perf_counter()
        self.stats["poll_seconds"] += t1 - t
        self.stats["polls"] += 1
        if t1 - self.last_flush >= self.flush_interval:
            self._send()
        if self.progress and self.rank == 0 and t1 - self.last_progress >= self.progress:
            self._maybe_progress()

    def _maybe_progress(self):
        if not self.progress or self.rank != 0:
            return
        now = time.perf_counter()
        if now - self.last_progress < self.progress:
            return
        self.last_progress = now
        self.win.Get_accumulate(self._z6, self._r6, 0, (G_OUT, 6, self.MPI.INT64_T), self.MPI.NO_OP)
        self.win.Flush(0)
        out, reg, busy, _stop, credit, l1 = (int(v) for v in self._r6)
        say(progress_line(now - self.t0, reg + self.dregions, self.old_regions, credit + self.dcredit, l1 + self.dl1,
                          busy, self.size, out), self.log)

    def global_regions(self):
        self.win.Get_accumulate(self._z3, self._r3, 0, (G_OUT, 3, self.MPI.INT64_T), self.MPI.NO_OP)
        self.win.Flush(0)
        return int(self._r3[1])

    def close(self):
        self._send(force=True)
        self.win.Unlock_all()
        self.stats["items_given"] = self.stats["items_published"] - self.stats["self_pops"]
        self.comm.Barrier()
        self.win.Free()
