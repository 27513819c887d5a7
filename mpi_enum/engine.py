"""The exact depth-first engine (serial: no MPI in this module).

Problem
-------
The hidden neurons are visited depth-first in layer-major order.  Inside a cell (a convex
polytope of the domain, in the domain's own coordinates ``y``, see :mod:`mpi_enum.domain`) the
layer-l affine map is fixed, so every neuron of layer l has a hyperplane ``a . y + a0 = 0`` that is
affine in ``y`` (the layer-wise framework of Drammis et al.).  A side of that hyperplane is kept
if and only if it holds a ball of radius > ``tol`` inside the cell (the Chebyshev criterion of the
yardstick).  Ties go to "inactive": a neuron whose pre-activation is constant on the cell is
active iff the constant is > 0.

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

Every LP is a Chebyshev LP (:mod:`mpi_enum.lp`).  A constraint row is dropped when the LP proves
the other side empty with a margin (the row is redundant), which keeps LPs small.

Kernels
-------
``Engine(problem, kernel="auto")`` returns one of two implementations of the same search:

* :class:`CEngine` (``kernel="c"``): the search in C (``mpi_enum/kernel/enum_kernel.c``, built by
  :mod:`mpi_enum.kernel_c`), with a small dense active-set LP solver whose every answer is
  certified (a feasible ball above ``tol + band``, or a dual bound below ``tol - band``); anything
  it is unsure of goes to HiGHS through a callback.  100x to 10,000x the yardstick.
* :class:`LPEngine` (``kernel="lp"``): the exact reference, in Python with HiGHS.

"auto" (also ``$MPI_ENUM_KERNEL``) picks C when the library is available and k <= 32.  Both
produce identical pattern sets, layer counts and ranks (tests/test_kernel.py).

Work items
----------
A :class:`WorkItem` is ``(depth, bits, yc, r)``: the decided bits of the first ``depth`` neurons
(0/1 bytes) plus a certified ball of the cell.  Any engine can rebuild the cell from it (the
hyperplanes only depend on the bits), so items travel between ranks and into checkpoints.
:meth:`Engine.explore` runs one item depth-first with an optional node budget and returns the
unexplored frontier, shallowest first: the budgeted-subtree scheme of mplrs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .lp import ChebyshevLP

DROP_MARGIN = 1e-7  # an LP radius below -DROP_MARGIN proves a side empty: its row is redundant


@dataclass
class WorkItem:
    depth: int
    bits: bytes  # one byte (0/1) per decided neuron, len == depth
    yc: np.ndarray
    r: float

    def encode(self, k: int, words: int | None = None) -> np.ndarray:
        """Float64 record [depth, r, yc(k), packed bits as float64 words], zero-padded to
        ``words`` (use ``record_size(k, N)`` for a fixed size across all items)."""
        packed = np.packbits(np.frombuffer(self.bits, dtype=np.uint8)) if self.depth else np.zeros(0, np.uint8)
        rec = np.concatenate([[float(self.depth), self.r], self.yc, _bytes_to_f64(packed)])
        if words is not None and rec.size < words:
            rec = np.concatenate([rec, np.zeros(words - rec.size)])
        return rec

    @staticmethod
    def record_size(k: int, n_neurons: int) -> int:
        return 2 + k + (((n_neurons + 7) // 8) + 7) // 8

    @staticmethod
    def decode(rec: np.ndarray, k: int) -> "WorkItem":
        depth = int(rec[0])
        r = float(rec[1])
        yc = np.array(rec[2 : 2 + k])
        packed = np.ascontiguousarray(rec[2 + k :]).view(np.uint8)
        bits = np.unpackbits(packed)[:depth].tobytes()
        return WorkItem(depth, bits, yc, r)


def _bytes_to_f64(packed: np.ndarray) -> np.ndarray:
    n = (packed.size + 7) // 8
    buf = np.zeros(n * 8, dtype=np.uint8)
    buf[: packed.size] = packed
    return buf.view(np.float64)


class Problem:
    """The network's hidden layers composed with the domain's coordinates."""

    def __init__(self, net, domain, tol=1e-9):
        self.net = net
        self.domain = domain
        self.tol = float(tol)
        self.k = domain.k
        Ws = [W for W in net.weights[:-1]]
        bs = [b for b in net.biases[:-1]]
        # first layer in y coordinates: W0 (x0 + E y) + b0
        self.Ws = [Ws[0] @ domain.E] + Ws[1:]
        self.bs = [bs[0] + Ws[0] @ domain.x0] + bs[1:]
        self.widths = [W.shape[0] for W in self.Ws]
        self.L = len(self.widths)
        self.N = int(sum(self.widths))
        self.offsets = np.concatenate([[0], np.cumsum(self.widths)]).astype(int)
        self.layer_of = np.repeat(np.arange(self.L), self.widths)
        # scale of each layer's weights, for scale-free "constant neuron" and rank tests
        self.wscale = [float(np.abs(W).max()) or 1.0 for W in self.Ws]

    @property
    def pattern_bytes(self) -> int:
        return (self.N + 7) // 8


class _Layer:
    """Hyperplanes of one layer inside a fixed layer-(l-1) region, shared by a whole subtree."""

    __slots__ = ("l", "H", "h0", "norm", "Hn", "h0n", "pre", "mscale")

    def __init__(self, l, H, h0, mscale):
        self.l = l
        self.H = H
        self.h0 = h0
        self.mscale = mscale
        norm = np.linalg.norm(H, axis=1)
        const = norm <= 1e-13 * mscale
        self.norm = np.where(const, 0.0, norm)
        safe = np.where(const, 1.0, norm)
        self.Hn = H / safe[:, None]
        self.h0n = h0 / safe
        # pre[j]: -1 undecided; 0/1 fixed bit without a row; 2/3 fixed bit (v-2) with a row
        self.pre = np.full(len(h0), -1, dtype=np.int8)
        self.pre[const] = (h0[const] > 0).astype(np.int8)


class _Node:
    __slots__ = ("depth", "bits", "ids", "A", "c", "yc", "r", "lay", "ranks")

    def __init__(self, depth, bits, ids, A, c, yc, r, lay, ranks):
        self.depth = depth
        self.bits = bits
        self.ids = ids
        self.A = A
        self.c = c
        self.yc = yc
        self.r = r
        self.lay = lay
        self.ranks = ranks


class Stats:
    def __init__(self, L):
        self.nodes = 0
        self.lps = 0
        self.regions = 0
        self.cert_both = 0
        self.screened = 0
        self.layer_counts = np.zeros(L, dtype=np.int64)

    def as_dict(self):
        return {"nodes": self.nodes, "lps": self.lps, "regions": self.regions,
                "cert_both": self.cert_both, "screened": self.screened,
                "layer_counts": self.layer_counts.tolist()}


KERNELS = ("auto", "lp", "c")
C_KERNEL_MAX_K = 32  # the C kernel's dense LP is O(k^3) per pivot: HiGHS wins beyond ~40 (measured)


def choose_kernel(problem: Problem, kernel: str = "auto") -> str:
    """The kernel that ``Engine(problem, kernel)`` uses: "lp" (reference) or "c" (fast)."""
    import os

    kernel = (kernel or "auto").lower()
    if kernel == "auto":
        kernel = os.environ.get("MPI_ENUM_KERNEL", "auto").lower() or "auto"
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r} (choose from {', '.join(KERNELS)})")
    if kernel == "auto":
        from . import kernel_c

        if problem.k <= C_KERNEL_MAX_K and kernel_c.load() is not None:
            return "c"
        return "lp"
    return kernel


class Engine:
    """Exact depth-first enumeration of one problem; ``explore`` runs a work item.

    ``Engine(problem)`` picks the kernel automatically (:func:`choose_kernel`): the C kernel
    (:class:`CEngine`) when it is built and the input dimension is small, else the reference
    LP kernel (:class:`LPEngine`).  ``Engine(problem, kernel="lp")`` forces the reference.
    Both produce identical pattern sets (tests/test_kernel.py).
    """

    kernel = "auto"

    def __new__(cls, problem: Problem, kernel: str = "auto"):
        if cls is Engine:
            cls = CEngine if choose_kernel(problem, kernel) == "c" else LPEngine
        return super().__new__(cls)


class LPEngine(Engine):
    """The reference kernel: Python depth-first search with HiGHS Chebyshev LPs."""

    kernel = "lp"

    def __init__(self, problem: Problem, kernel: str = "lp"):
        self.p = problem
        dom = problem.domain
        self.lp = ChebyshevLP(problem.k, dom.G, dom.h, cap=1.0)
        self.stats = Stats(problem.L)
        self.tol = problem.tol
        self.y_lo = dom.y_lo
        self.y_hi = dom.y_hi

    # ----------------------------------------------------------------- items
    def root_item(self) -> WorkItem:
        t, y = self.lp.solve((), np.zeros((0, self.p.k)), np.zeros(0))
        self.stats.lps += 1
        return WorkItem(0, b"", y, min(t, 1.0))

    def _layer(self, l, M, m):
        """Layer-l hyperplanes given the affine map (M, m) of its input in y."""
        W, b = self.p.Ws[l], self.p.bs[l]
        return _Layer(l, W @ M, W @ m + b, self.p.wscale[l] * (np.abs(M).max() if M.size else 1.0) + 1e-300)

    def _rebuild(self, item: WorkItem) -> _Node:
        p = self.p
        k = p.k
        M, m = np.eye(k), np.zeros(k)
        rows, rhs, ids = [], [], []
        ranks = []
        lay = self._layer(0, M, m)
        for i in range(item.depth):
            l = p.layer_of[i]
            j = i - p.offsets[l]
            if j == 0 and l > 0:
                mask = np.frombuffer(item.bits[p.offsets[l - 1] : p.offsets[l]], dtype=np.uint8).astype(bool)
                M, m = lay.H * mask[:, None], lay.h0 * mask
                ranks.append(self._rank(M, lay))
                lay = self._layer(l, M, m)
            if lay.norm[j] == 0.0:
                continue
            bit = item.bits[i]
            if bit:
                rows.append(-lay.Hn[j]); rhs.append(lay.h0n[j])
            else:
                rows.append(lay.Hn[j]); rhs.append(-lay.h0n[j])
            ids.append(2 * i + bit)
        A = np.array(rows).reshape(-1, k)
        c = np.array(rhs, dtype=np.float64)
        node = _Node(item.depth, item.bits, tuple(ids), A, c, np.array(item.yc, dtype=np.float64), float(item.r), lay, tuple(ranks))
        if item.depth < p.N:
            l = p.layer_of[item.depth]
            if item.depth > p.offsets[l] or item.depth == 0:
                self._screen(node, item.depth)
            # else: the node completes layer l-1; explore() makes the transition
        return node

    # ------------------------------------------------------------- geometry
    def _rank(self, M, lay):
        if M.size == 0:
            return 0
        s = np.linalg.svd(M, compute_uv=False)
        return int(np.sum(s > 1e-10 * max(s[0], 1e-300))) if s[0] > 1e-12 * lay.mscale else 0

    def _cheb(self, node, a, c0):
        self.stats.lps += 1
        return self.lp.solve(node.ids, node.A, node.c, a, c0)

    def _box_max(self, a, a0):
        """Upper bound of a . y + a0 over the domain's bounding box (inf if unbounded)."""
        if self.y_lo is None:
            return np.inf
        return a0 + float(np.sum(np.maximum(a * self.y_lo, a * self.y_hi)))

    def _screen(self, node, start):
        """Fix the bits of the layer's hyperplanes (from neuron index ``start``) that miss the cell."""
        lay = node.lay
        p = self.p
        off = p.offsets[lay.l]
        tol = self.tol
        for j in range(start - off, len(lay.h0)):
            if lay.pre[j] != -1:
                continue
            a, a0 = lay.Hn[j], lay.h0n[j]
            s = float(a @ node.yc) + a0
            if abs(s) < node.r:
                continue  # the ball is cut: both sides exist here
            # the ball lies on side `bit`; test the other side
            bit = 1 if s > 0 else 0
            if bit:  # other side: a y + a0 <= 0, i.e. row (a, -a0); its max of -(a y + a0)
                bound = self._box_max(-a, -a0)
                row, rhs = a, -a0
            else:
                bound = self._box_max(a, a0)
                row, rhs = -a, a0
            if bound < -DROP_MARGIN:
                lay.pre[j] = bit
                self.stats.screened += 1
                continue
            if bound <= tol:
                lay.pre[j] = bit + 2
                self.stats.screened += 1
                continue
            t, _ = self._cheb(node, row, rhs)
            if t <= tol:
                lay.pre[j] = bit if t < -DROP_MARGIN else bit + 2
                self.stats.screened += 1

    def _enter_layer(self, node, l):
        """node completes layer l-1: count it, compute layer l and screen it."""
        p = self.p
        lay = node.lay
        mask = np.frombuffer(node.bits[p.offsets[l - 1] : p.offsets[l]], dtype=np.uint8).astype(bool)
        M, m = lay.H * mask[:, None], lay.h0 * mask
        ranks = node.ranks + (self._rank(M, lay),)
        new = _Node(node.depth, node.bits, node.ids, node.A, node.c, node.yc, node.r, self._layer(l, M, m), ranks)
        self._screen(new, p.offsets[l])
        return new

    # ------------------------------------------------------------- search
    def explore(self, item: WorkItem, emit, budget=None, poll=None, poll_every=32, emit_batch=None):
        """Enumerate the subtree of ``item``; call ``emit(bits, yc, r, ranks)`` per region.

        With a node ``budget``, stop after that many nodes and return the unexplored frontier
        (a list of WorkItems, shallowest first); otherwise return [].  ``poll()`` is called
        every ``poll_every`` nodes (the parallel driver uses it to make MPI progress).
        ``emit_batch`` (optional, see :meth:`CEngine.explore`) replaces ``emit``.
        """
        if emit_batch is not None:
            L = self.p.L

            def emit(bits, yc, r, ranks, _b=emit_batch):
                _b(np.frombuffer(bits, dtype=np.uint8).reshape(1, -1), np.asarray(yc, dtype=np.float64)[None, :],
                   np.array([r], dtype=np.float64), np.array(ranks, dtype=np.int64).reshape(1, L))
        p = self.p
        N, L, tol = p.N, p.L, self.tol
        offsets = p.offsets
        st = self.stats
        node = self._rebuild(item)
        stack = []
        done = 0
        while True:
            if node is None:
                if not stack:
                    return []
                node = stack.pop()
            done += 1
            st.nodes += 1
            if poll is not None and done % poll_every == 0:
                poll()
            if budget is not None and done > budget:
                stack.append(node)
                return [WorkItem(n.depth, n.bits, n.yc, n.r) for n in stack]
            i = node.depth
            lay = node.lay
            l = lay.l
            # layer transition: node holds a complete layer-l region
            if i == offsets[l + 1]:
                st.layer_counts[l] += 1
                if i == N:
                    mask = np.frombuffer(node.bits[offsets[l]:], dtype=np.uint8).astype(bool)
                    ranks = node.ranks + (self._rank(lay.H * mask[:, None], lay),)
                    st.regions += 1
                    emit(node.bits, node.yc, node.r, ranks)
                    node = None
                    continue
                node = self._enter_layer(node, l + 1)
                lay = node.lay
                l = lay.l
            j = i - offsets[l]
            pre = lay.pre[j]
            if pre >= 0:
                bit = int(pre & 1)
                if pre >= 2:
                    a = lay.Hn[j]
                    row, rhs = (-a, lay.h0n[j]) if bit else (a, -lay.h0n[j])
                    node = _Node(i + 1, node.bits + (b"\x01" if bit else b"\x00"), node.ids + (2 * i + bit,),
                                 np.vstack([node.A, row]), np.append(node.c, rhs), node.yc, node.r, lay, node.ranks)
                else:
                    node = _Node(i + 1, node.bits + (b"\x01" if bit else b"\x00"), node.ids, node.A, node.c,
                                 node.yc, node.r, lay, node.ranks)
                continue
            a, a0 = lay.Hn[j], lay.h0n[j]
            yc, r = node.yc, node.r
            s = float(a @ yc) + a0  # signed distance of the centre (positive: active side)
            # active side {a y + a0 >= 0}: row -a y <= a0 ; inactive {a y + a0 <= 0}: row a y <= -a0
            if s >= r:
                act = (yc, r)
                inact = None
            elif s <= -r:
                inact = (yc, r)
                act = None
            else:
                ra, ri = (r + s) / 2.0, (r - s) / 2.0
                act = (yc + a * ((r - s) / 2.0), ra) if ra > tol else None
                inact = (yc - a * ((r + s) / 2.0), ri) if ri > tol else None
                if act is not None and inact is not None:
                    st.cert_both += 1
            keep_row_a = keep_row_i = True
            if act is None:
                bound = self._box_max(a, a0)
                if bound <= tol:
                    keep_row_i = bound >= -DROP_MARGIN
                else:
                    t, y = self._cheb(node, -a, a0)
                    if t > tol:
                        act = (y, t)
                    else:
                        keep_row_i = t >= -DROP_MARGIN
            if inact is None:
                bound = self._box_max(-a, -a0)
                if bound <= tol:
                    keep_row_a = bound >= -DROP_MARGIN
                else:
                    t, y = self._cheb(node, a, -a0)
                    if t > tol:
                        inact = (y, t)
                    else:
                        keep_row_a = t >= -DROP_MARGIN
            children = []
            if inact is not None:
                if keep_row_i:
                    children.append(_Node(i + 1, node.bits + b"\x00", node.ids + (2 * i,), np.vstack([node.A, a]),
                                          np.append(node.c, -a0), inact[0], inact[1], lay, node.ranks))
                else:
                    children.append(_Node(i + 1, node.bits + b"\x00", node.ids, node.A, node.c, inact[0], inact[1],
                                          lay, node.ranks))
            if act is not None:
                if keep_row_a:
                    children.append(_Node(i + 1, node.bits + b"\x01", node.ids + (2 * i + 1,), np.vstack([node.A, -a]),
                                          np.append(node.c, a0), act[0], act[1], lay, node.ranks))
                else:
                    children.append(_Node(i + 1, node.bits + b"\x01", node.ids, node.A, node.c, act[0], act[1],
                                          lay, node.ranks))
            if not children:
                node = None  # numerically empty cell (cannot happen with a valid ball; kept safe)
                continue
            node = children.pop()
            stack.extend(children)


class CEngine(Engine):
    """The fast kernel: the same search in C (mpi_enum/kernel/enum_kernel.c, via ctypes).

    Same decisions as :class:`LPEngine`; its small dense LP solver certifies every answer
    (a feasible ball above tol + band, or a dual bound below tol - band) and hands anything
    else to HiGHS (the reference LP) through a callback.  The C search runs in chunks of at
    most ``poll_every`` nodes and returns to Python between chunks (emit, poll, budget).
    """

    kernel = "c"
    EMAX = 4096  # nodes per C call without poll (each node emits at most one region)
    BAND_REL = 0.5  # certified only outside [tol - band, tol + band], band = 0.5 tol + 1e-13

    def __init__(self, problem: Problem, kernel: str = "c"):
        import ctypes
        import weakref

        from . import kernel_c

        lib = kernel_c.load()
        if lib is None:
            raise RuntimeError(f"the C kernel is not available ({kernel_c.error()})")
        self._lib = lib
        self.p = p = problem
        dom = p.domain
        self.lp = ChebyshevLP(p.k, dom.G, dom.h, cap=1.0)  # root ball and the fallback LPs
        self.stats = Stats(p.L)
        self.stats.lp_fallbacks = 0
        self.tol = p.tol
        self._serial = 0
        self._exc = None
        k = p.k
        dp = ctypes.POINTER(ctypes.c_double)
        f64 = lambda a: np.ascontiguousarray(a, dtype=np.float64)
        Wflat = f64(np.concatenate([W.ravel() for W in p.Ws]))
        bflat = f64(np.concatenate([b.ravel() for b in p.bs]))
        wscale = f64(p.wscale)
        widths = np.ascontiguousarray(p.widths, dtype=np.int32)
        G = f64(dom.G.reshape(-1, k)) if len(dom.G) else np.zeros(k)
        h = f64(dom.h) if len(dom.h) else np.zeros(1)
        bounded = dom.y_lo is not None
        ylo = f64(dom.y_lo) if bounded else np.zeros(k)
        yhi = f64(dom.y_hi) if bounded else np.zeros(k)
        ref = weakref.ref(self)

        def cb(nrows, A, c, a, c0, yout):
            eng = ref()
            if eng is None:
                return float("nan")
            return eng._fallback(nrows, A, c, a, c0, yout)

        self._cb = kernel_c.LP_CB(cb)
        ptr = lambda a: a.ctypes.data_as(dp)
        self._ctx = lib.kc_new(k, p.L, widths.ctypes.data_as(ctypes.POINTER(ctypes.c_int)), ptr(Wflat),
                               ptr(bflat), ptr(wscale), len(dom.G), ptr(G), ptr(h), int(bounded), ptr(ylo),
                               ptr(yhi), self.tol, 1.0, DROP_MARGIN, self.BAND_REL * self.tol + 1e-13,
                               self.EMAX, self._cb)
        if not self._ctx:
            raise MemoryError("kc_new failed")
        L = p.L
        self._ebits = lib.kc_ebits(self._ctx)
        self._ey = np.ctypeslib.as_array(lib.kc_ey(self._ctx), (self.EMAX * k,))
        self._er = np.ctypeslib.as_array(lib.kc_er(self._ctx), (self.EMAX,))
        self._erank = np.ctypeslib.as_array(lib.kc_erank(self._ctx), (self.EMAX * L,))
        self._sbuf = (ctypes.c_longlong * (8 + L))()
        self._slast = [0] * (8 + L)
        self._dp = dp

    def __del__(self):
        ctx = getattr(self, "_ctx", None)
        if ctx:
            self._lib.kc_free(ctx)
            self._ctx = None

    def _fallback(self, nrows, A, c, a, c0, yout):
        try:
            k = self.p.k
            Am = np.array(A[: nrows * k], dtype=np.float64).reshape(nrows, k)
            cm = np.array(c[:nrows], dtype=np.float64)
            av = np.array(a[:k], dtype=np.float64)
            self._serial += 1
            ids = tuple((self._serial, i) for i in range(nrows))
            t, y = self.lp.solve(ids, Am, cm, av, float(c0))
            for e in range(k):
                yout[e] = float(y[e])
            return float(t)
        except BaseException as exc:  # surfaced by _check after the C call returns
            self._exc = exc
            return float("nan")

    def _check(self, rc):
        if rc < 0 or self._exc is not None:
            exc, self._exc = self._exc, None
            if exc is not None:
                raise exc
            raise RuntimeError(f"C kernel error {rc}")

    def _sync_stats(self):
        """Add the C counters' increments since the last sync (callers may reset stats fields)."""
        s = self._sbuf
        self._lib.kc_stats(self._ctx, s)
        new = list(s)
        old = self._slast
        self._slast = new
        st = self.stats
        st.nodes += new[0] - old[0]
        st.lps += new[1] - old[1]
        st.regions += new[2] - old[2]
        st.cert_both += new[3] - old[3]
        st.screened += new[4] - old[4]
        st.lp_fallbacks += new[5] - old[5]
        L = self.p.L
        st.layer_counts += np.array(new[8: 8 + L], dtype=np.int64) - np.array(old[8: 8 + L], dtype=np.int64)

    def root_item(self) -> WorkItem:
        t, y = self.lp.solve((), np.zeros((0, self.p.k)), np.zeros(0))
        self.stats.lps += 1
        return WorkItem(0, b"", y, min(t, 1.0))

    def _flush(self, emit, emit_batch=None):
        lib, ctx = self._lib, self._ctx
        n = lib.kc_nemit(ctx)
        if n == 0:
            return
        import ctypes

        N, k, L = self.p.N, self.p.k, self.p.L
        raw = ctypes.string_at(self._ebits, n * N)
        Y = self._ey[: n * k].reshape(n, k).copy()
        if emit_batch is not None:
            emit_batch(np.frombuffer(raw, dtype=np.uint8).reshape(n, N), Y, self._er[:n].copy(),
                       self._erank[: n * L].reshape(n, L).copy())
            return
        R = self._er[:n].tolist()
        RK = self._erank[: n * L].reshape(n, L).tolist()
        for q in range(n):
            emit(raw[q * N: (q + 1) * N], Y[q], R[q], tuple(RK[q]))

    def explore(self, item: WorkItem, emit, budget=None, poll=None, poll_every=32, emit_batch=None):
        """As :meth:`LPEngine.explore` (same arguments, same results).

        ``emit_batch(bits (n, N) uint8 0/1, yc (n, k), r (n,), ranks (n, L))``, if given, replaces
        the per-region ``emit`` calls (several regions per call: cheaper for the caller).
        """
        import ctypes

        lib, ctx = self._lib, self._ctx
        depth = int(item.depth)
        bits = (ctypes.c_ubyte * max(depth, 1)).from_buffer_copy(bytes(item.bits[:depth]) or b"\0")
        yc = np.ascontiguousarray(item.yc, dtype=np.float64)
        rc = lib.kc_start(ctx, depth, bits, yc.ctypes.data_as(self._dp), float(item.r))
        self._check(-abs(rc))
        chunk = min(max(int(poll_every), 1), self.EMAX) if poll is not None else self.EMAX
        done = 0
        while True:
            lim = chunk if budget is None else min(chunk, budget - done)
            if lim <= 0:
                return self._frontier()
            n0 = self.stats.nodes
            rc = lib.kc_run(ctx, lim)
            self._sync_stats()
            done += self.stats.nodes - n0
            self._flush(emit, emit_batch)
            self._check(rc)
            if rc == 0:
                return []
            if poll is not None:
                poll()

    def _frontier(self):
        import ctypes

        lib, ctx = self._lib, self._ctx
        n = lib.kc_pending(ctx)
        if n == 0:
            return []
        N, k = self.p.N, self.p.k
        depths = np.zeros(n, dtype=np.int32)
        bits = np.zeros(n * max(N, 1), dtype=np.uint8)
        ys = np.zeros(n * k)
        rs = np.zeros(n)
        lib.kc_frontier(ctx, depths.ctypes.data_as(ctypes.POINTER(ctypes.c_int)),
                        bits.ctypes.data_as(ctypes.POINTER(ctypes.c_ubyte)), ys.ctypes.data_as(self._dp),
                        rs.ctypes.data_as(self._dp))
        out = []
        for s in range(n):
            d = int(depths[s])
            out.append(WorkItem(d, bits[s * N: s * N + d].tobytes(), ys[s * k:(s + 1) * k].copy(), float(rs[s])))
        return out


def enumerate_serial(problem: Problem, kernel: str = "auto"):
    """Enumerate everything in one process; returns (list of (bits, yc, r, ranks), stats)."""
    eng = Engine(problem, kernel)
    out = []
    eng.explore(eng.root_item(), lambda b, y, r, rk: out.append((b, y, r, rk)))
    return out, eng.stats
