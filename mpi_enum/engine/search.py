"""The exact depth-first engine (serial: no MPI in this module).

Problem
-------
The hidden neurons are visited depth-first in layer-major order.  Inside a cell (a convex
polytope of the domain, in the domain's own coordinates ``y``, see :mod:`mpi_enum.model.domain`)
the layer-l affine map is fixed, so every neuron of layer l has a hyperplane ``a . y + a0 = 0``
that is affine in ``y`` (the layer-wise framework of Drammis et al.).  A side of that hyperplane
is kept if and only if it holds a ball of radius > ``tol`` inside the cell (the Chebyshev
criterion of the yardstick).  Ties go to "inactive": a neuron whose pre-activation is constant
on the cell is active iff the constant is > 0.

Cheap certificates before any LP
--------------------------------
Every node carries a ball (centre ``yc``, radius ``r > tol``) known to lie in its cell.

* If the hyperplane cuts the ball at signed distance ``s`` from the centre, the two caps hold
  balls of radius ``(r + s)/2`` and ``(r - s)/2``: both sides are certified without an LP when
  both exceed tol.
* If the ball lies on one side, that side is certified with the same ball; only the other side
  needs an LP, unless the box bound ``max over the cell's bounding box`` already shows that side
  holds no ball of radius > tol.
* At the start of every layer (and for every rebuilt work item) all hyperplanes of the layer are
  screened at once against the current cell: those that do not cut it get their bit fixed for the
  whole subtree, so they cost nothing below.

Every LP is a Chebyshev LP.  A constraint row is dropped when the LP proves the other side empty
with a margin (``DROP_MARGIN``: the row is redundant), which keeps LPs small.

Vertex sets in low dimension
----------------------------
On a domain that is exactly its bounding box with k <= ``VREP_MAX_K`` (6), the kernel also keeps
every cell's vertices, each with the k facets it lies on (``kernel/vrep.c``).  A hyperplane with
every vertex beyond ``VREP_EPS`` on one side misses the cell (no LP, no row); otherwise the cut
is computed from the crossing edges (two vertices of a simple polytope share an edge iff they
share k-1 facets), and each side is certified by a ball (the caps above, or the exact inscribed
radius at a point midway between the cut's centroid and the side's farthest vertex), with an LP
only when neither holds.  Screening uses the vertices too.  A hyperplane that passes within
``VREP_EPS`` of a vertex (a non-simple cell: degenerate arrangements) or an edge crossed too
flatly (``VREP_RHO``) hands that cell's subtree back to the LPs, so exactness never rests on the
vertex sets being right in degenerate cases.  Measured (callgrind, whole search, instructions):
7x fewer at k = 4 (bench_d4_12x3), 2x fewer at k = 6, 1.4x more at k = 8 (hence the limit).

One search, compiled
--------------------
The search runs in the compiled kernel (``mpi_enum/engine/kernel/enum_kernel.c``, the extension
:mod:`mpi_enum.engine._kernel`, see :mod:`.native`) for every input dimension k.  For
k <= ``DENSE_LP_MAX_K`` (32) an LP is first solved by the kernel's small dense active-set method,
whose answer is used only when certified (a feasible ball above ``tol + band``, or a dual bound
below ``tol - band``, band = ``BAND_REL * tol + BAND_ABS``).  Every other LP, and every LP for
larger k (where the dense method's O(k^3) per pivot loses to HiGHS), goes to HiGHS
(:class:`~.lp.ChebyshevLP`) through a callback that receives the path rows' ids (neuron i on side
b: ``2*i+b``), so consecutive LPs share their common prefix of rows and HiGHS warm-starts.
On a domain that is exactly its bounding box, for k > ``BOXLP_MIN_K`` (9) the kernel's box LP
(``kernel/boxlp.c``: the box as bounds on the columns, a warm-started bounded dual simplex whose
basis has one entry per cell row whatever k is) replaces the dense LP and decides first,
certified the same way; HiGHS takes what it leaves.
The numeric thresholds live in ``kernel/decisions.h`` only.  ``tests/reference_engine.py``
(the test oracle, pure Python + HiGHS) makes the same decisions; tests/test_kernel.py checks
that both produce identical pattern sets, layer counts and ranks.

Work items
----------
A :class:`WorkItem` is ``(depth, bits, yc, r)``: the decided bits of the first ``depth`` neurons
(0/1 bytes) plus a certified ball of the cell.  The engine rebuilds the cell from it (the
hyperplanes only depend on the bits), so items travel between ranks and into checkpoints.
:meth:`Engine.explore` runs one item depth-first with an optional node budget and returns the
unexplored frontier, shallowest first: the budgeted-subtree scheme of mplrs.
"""
from __future__ import annotations

import time

import numpy as np

from ..model.problem import Problem
from . import native
from .lp import ChebyshevLP
from .work import Stats, WorkItem


def _highs_fallback(lp: ChebyshevLP, k: int):
    """The kernel's LP callback: ``(ids, A, c, a, c0) -> (t, y)`` solved by HiGHS.

    ``ids`` are the path rows' ids (``2*i+bit``, in path order): :meth:`ChebyshevLP.solve` keeps
    the rows of the common prefix with the previous call in its model and warm-starts.  The
    closure holds the LP, not the engine, so it makes no reference cycle."""

    def solve(ids, A, c, a, c0):
        n = len(ids)
        t, y = lp.solve(ids, np.frombuffer(A).reshape(n, k), np.frombuffer(c), np.frombuffer(a), c0)
        return float(t), np.ascontiguousarray(y, dtype=np.float64)

    return solve


class Engine:
    """Exact depth-first enumeration of one problem; :meth:`explore` runs a work item.

    The search is the compiled kernel, for every input dimension; ``stats`` (a
    :class:`~.work.Stats` plus ``lp_fallbacks``: the LPs HiGHS solved) is updated after every
    kernel call.  The kernel runs in chunks of at most ``poll_every`` nodes (``EMAX`` without a
    ``poll``) and returns to Python between chunks (emit, poll, budget).
    """

    #: the name the parallel driver reads for its poll_every (one kernel now; the driver should
    #: move to :attr:`poll_every_hint`, which also covers k > DENSE_LP_MAX_K)
    kernel = "c"
    EMAX = native.EMIT_MAX  # nodes per kernel call without poll (a node emits at most one region)
    BAND_REL = native.BAND_REL  # the certification band's relative part (tests may widen it)
    DENSE_LP_MAX_K = native.DENSE_LP_MAX_K  # dense LP first for k <= this, else HiGHS only
    VREP_MAX_K = native.VREP_MAX_K  # vertex sets decide first on box domains with k <= this

    def __init__(self, problem: Problem):
        self.p = p = problem
        dom = p.domain
        k = p.k
        self.tol = p.tol
        self.lp = ChebyshevLP(k, dom.G, dom.h, cap=native.BALL_CAP)  # root ball and HiGHS LPs
        self.stats = Stats(p.L)
        self.stats.lp_fallbacks = 0
        self.stats.vertex_decisions = 0  # hyperplanes decided from vertex sets (no LP)
        self.stats.vertex_lost = 0  # cells handed back to the LPs (degenerate: near a vertex)

        def f64(a):
            return np.ascontiguousarray(a, dtype=np.float64).ravel()

        bounded = dom.y_lo is not None
        self._kern = native.Kernel(
            k, [int(w) for w in p.widths], np.concatenate([f64(W) for W in p.Ws]),
            np.concatenate([f64(b) for b in p.bs]), f64(p.wscale), f64(dom.G), f64(dom.h),
            f64(dom.y_lo) if bounded else None, f64(dom.y_hi) if bounded else None, self.tol,
            self._lp_fallback(), band_rel=float(self.BAND_REL), dense_max_k=int(self.DENSE_LP_MAX_K),
            emax=int(self.EMAX), vrep_max_k=int(self.VREP_MAX_K),
            slope=None if p.slope is None else f64(p.slope),
            linear=None if p.linear is None else np.ascontiguousarray(p.linear, dtype=np.uint8).tobytes(),
            group=None if p.group is None else np.ascontiguousarray(p.group, dtype=np.intc).tobytes())
        self._gated = p.gated  # the pattern's bits among the kernel's (None: all)
        #: True when the kernel tries its dense LP before HiGHS (k <= DENSE_LP_MAX_K, unless
        #: the box LP replaces it)
        self.dense_lp = bool(self._kern.dense)
        #: True when the kernel's box LP decides first (box domains with k > BOXLP_MIN_K)
        self.box_lp = bool(self._kern.box_lp)
        #: True when the cells' vertex sets decide first (box domains with k <= VREP_MAX_K)
        self.vertex_sets = bool(self._kern.vertex_sets)
        self._slast = (0,) * (len(native.STATS) + p.L)

    @property
    def poll_every_hint(self) -> int:
        """A ``poll_every`` for the parallel driver: nodes cost microseconds with the dense LP
        (k <= DENSE_LP_MAX_K) but milliseconds when every LP goes to HiGHS (as the former Python
        engine's, for which the driver polled every 16 nodes)."""
        return 256 if self.dense_lp else 16

    def _lp_fallback(self):
        """The kernel's LP callback ``(ids, A, c, a, c0) -> (t, y)``: HiGHS (subclasses may wrap it)."""
        return _highs_fallback(self.lp, self.p.k)

    # ----------------------------------------------------------------- items
    def root_item(self) -> WorkItem:
        """The whole domain: its Chebyshev ball (capped at ``BALL_CAP``)."""
        t, y = self.lp.solve((), np.zeros((0, self.p.k)), np.zeros(0))
        self.stats.lps += 1
        return WorkItem(0, b"", np.asarray(y, dtype=np.float64), min(t, native.BALL_CAP))

    def _sync_stats(self):
        """Add the kernel counters' increments since the last sync (callers may reset stats fields)."""
        new = self._kern.stats()
        old, self._slast = self._slast, new
        st = self.stats
        st.nodes += new[0] - old[0]
        st.lps += new[1] - old[1]
        st.regions += new[2] - old[2]
        st.cert_both += new[3] - old[3]
        st.screened += new[4] - old[4]
        st.lp_fallbacks += new[5] - old[5]
        st.vertex_decisions += new[8] - old[8]
        st.vertex_lost += new[10] - old[10]
        ns = len(native.STATS)
        st.layer_counts += np.array(new[ns:], dtype=np.int64) - np.array(old[ns:], dtype=np.int64)

    def _flush(self, emit, emit_batch):
        n, bits, Y, R, RK = self._kern.emitted()
        if n == 0:
            return
        N, k, L = self.p.N, self.p.k, self.p.L
        Y = np.frombuffer(Y, dtype=np.float64).reshape(n, k)
        R = np.frombuffer(R, dtype=np.float64)
        RK = np.frombuffer(RK, dtype=np.intc).reshape(n, L)
        B = np.frombuffer(bits, dtype=np.uint8).reshape(n, N)
        if self._gated is not None:  # linear neurons have no pattern bit
            B = np.ascontiguousarray(B[:, self._gated])
            bits, N = B.tobytes(), B.shape[1]
        if emit_batch is not None:
            emit_batch(B, Y, R, RK)
            return
        R, RK = R.tolist(), RK.tolist()
        for q in range(n):
            emit(bits[q * N: (q + 1) * N], Y[q], R[q], tuple(RK[q]))

    def _frontier(self):
        return [WorkItem(d, b, np.frombuffer(y, dtype=np.float64), r) for d, b, y, r in self._kern.frontier()]

    # ------------------------------------------------------------- search
    def explore(self, item: WorkItem, emit, budget=None, poll=None, poll_every=32, emit_batch=None, seconds=None):
        """Enumerate the subtree of ``item``; call ``emit(bits, yc, r, ranks)`` per region.

        With a node ``budget``, stop after that many nodes and return the unexplored frontier
        (a list of WorkItems, shallowest first); otherwise return [].  ``poll()`` is called
        every ``poll_every`` nodes (the parallel driver uses it to make MPI progress).
        ``emit_batch(bits (n, N) uint8 0/1, yc (n, k), r (n,), ranks (n, L))``, if given, replaces
        the per-region ``emit`` calls (several regions per call: cheaper for the caller).
        With ``seconds``, also stop (returning the frontier, as for the node budget) once that much
        time has passed, checked every ``poll_every_hint`` nodes: so a stop request is honoured
        within about that time however long one node takes (d = 784: milliseconds).
        An exception raised in the HiGHS fallback propagates from here.
        """
        kern = self._kern
        depth = int(item.depth)
        kern.start(depth, bytes(item.bits[:depth]), np.ascontiguousarray(item.yc, dtype=np.float64), float(item.r))
        self._sync_stats()
        chunk = min(max(int(poll_every), 1), self.EMAX) if poll is not None else self.EMAX
        deadline = None
        if seconds is not None:
            deadline = time.monotonic() + float(seconds)
            chunk = min(chunk, self.poll_every_hint)
        done = 0
        while True:
            lim = chunk if budget is None else min(chunk, budget - done)
            if lim <= 0 or (deadline is not None and done and time.monotonic() > deadline):
                return self._frontier()
            n0 = self.stats.nodes
            rc = kern.run(lim)
            self._sync_stats()
            done += self.stats.nodes - n0
            self._flush(emit, emit_batch)
            if rc == 0:
                return []
            if poll is not None:
                poll()


def enumerate_serial(problem: Problem):
    """Enumerate everything in one process; returns (list of (bits, yc, r, ranks), stats)."""
    eng = Engine(problem)
    out = []
    eng.explore(eng.root_item(), lambda b, y, r, rk: out.append((b, y, r, rk)))
    return out, eng.stats
