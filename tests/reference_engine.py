"""The test oracle: the search of :mod:`mpi_enum.engine.search` in pure Python + HiGHS.

This was the package's ``LPEngine`` (the reference kernel); the package now has one search, the
compiled kernel, and this copy stays with the tests to check it: the same decisions (ball
certificates, box bound, per-layer screening, row dropping, ties to "inactive", ranks), every LP
solved by HiGHS (:class:`mpi_enum.engine.lp.ChebyshevLP`).  Its thresholds are read from the
extension module (``mpi_enum/engine/kernel/decisions.h``), never restated.

    eng = ReferenceEngine(problem)
    eng.explore(eng.root_item(), emit, budget=None, poll=None, poll_every=32, emit_batch=None)
"""
from __future__ import annotations

import numpy as np

from mpi_enum.engine import native
from mpi_enum.engine.lp import ChebyshevLP
from mpi_enum.engine.work import Stats, WorkItem
from mpi_enum.model.problem import Problem

K = native._kernel
CONST_NEURON_REL = K.CONST_NEURON_REL
RANK_REL = K.RANK_REL
RANK_ZERO_REL = K.RANK_ZERO_REL
TINY = K.TINY
DROP_MARGIN = K.DROP_MARGIN
BALL_CAP = K.BALL_CAP


class _Layer:
    """Hyperplanes of one layer inside a fixed layer-(l-1) region, shared by a whole subtree."""

    __slots__ = ("l", "H", "h0", "norm", "Hn", "h0n", "pre", "mscale")

    def __init__(self, l, H, h0, mscale):
        self.l = l
        self.H = H
        self.h0 = h0
        self.mscale = mscale
        norm = np.linalg.norm(H, axis=1)
        const = norm <= CONST_NEURON_REL * mscale
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


class ReferenceEngine:
    """Python depth-first search with HiGHS Chebyshev LPs (same interface as ``Engine``)."""

    def __init__(self, problem: Problem):
        self.p = problem
        dom = problem.domain
        self.lp = ChebyshevLP(problem.k, dom.G, dom.h, cap=BALL_CAP)
        self.stats = Stats(problem.L)
        self.tol = problem.tol
        self.y_lo = dom.y_lo
        self.y_hi = dom.y_hi

    # ----------------------------------------------------------------- items
    def root_item(self) -> WorkItem:
        t, y = self.lp.solve((), np.zeros((0, self.p.k)), np.zeros(0))
        self.stats.lps += 1
        return WorkItem(0, b"", y, min(t, BALL_CAP))

    def _layer(self, l, M, m):
        """Layer-l hyperplanes given the affine map (M, m) of its input in y."""
        W, b = self.p.Ws[l], self.p.bs[l]
        return _Layer(l, W @ M, W @ m + b, self.p.wscale[l] * (np.abs(M).max() if M.size else 1.0) + TINY)

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
                mask = np.frombuffer(item.bits[p.offsets[l - 1]: p.offsets[l]], dtype=np.uint8).astype(bool)
                M, m = lay.H * mask[:, None], lay.h0 * mask
                ranks.append(self._rank(M, lay))
                lay = self._layer(l, M, m)
            if lay.norm[j] == 0.0:
                continue
            bit = item.bits[i]
            if bit:
                rows.append(-lay.Hn[j])
                rhs.append(lay.h0n[j])
            else:
                rows.append(lay.Hn[j])
                rhs.append(-lay.h0n[j])
            ids.append(2 * i + bit)
        A = np.array(rows).reshape(-1, k)
        c = np.array(rhs, dtype=np.float64)
        node = _Node(item.depth, item.bits, tuple(ids), A, c, np.array(item.yc, dtype=np.float64), float(item.r),
                     lay, tuple(ranks))
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
        return int(np.sum(s > RANK_REL * max(s[0], TINY))) if s[0] > RANK_ZERO_REL * lay.mscale else 0

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
        off = self.p.offsets[lay.l]
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
        mask = np.frombuffer(node.bits[p.offsets[l - 1]: p.offsets[l]], dtype=np.uint8).astype(bool)
        M, m = lay.H * mask[:, None], lay.h0 * mask
        ranks = node.ranks + (self._rank(M, lay),)
        new = _Node(node.depth, node.bits, node.ids, node.A, node.c, node.yc, node.r, self._layer(l, M, m), ranks)
        self._screen(new, p.offsets[l])
        return new

    @staticmethod
    def _child(node, bit, ids, A, c, yc, r, lay):
        return _Node(node.depth + 1, node.bits + (b"\x01" if bit else b"\x00"), ids, A, c, yc, r, lay, node.ranks)

    # ------------------------------------------------------------- search
    def explore(self, item: WorkItem, emit, budget=None, poll=None, poll_every=32, emit_batch=None):
        """As :meth:`mpi_enum.engine.search.Engine.explore`."""
        p = self.p
        N, L, tol = p.N, p.L, self.tol
        if emit_batch is not None:
            def emit(bits, yc, r, ranks, _b=emit_batch):
                _b(np.frombuffer(bits, dtype=np.uint8).reshape(1, -1), np.asarray(yc, dtype=np.float64)[None, :],
                   np.array([r], dtype=np.float64), np.array(ranks, dtype=np.int64).reshape(1, L))
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
                    node = self._child(node, bit, node.ids + (2 * i + bit,), np.vstack([node.A, row]),
                                       np.append(node.c, rhs), node.yc, node.r, lay)
                else:
                    node = self._child(node, bit, node.ids, node.A, node.c, node.yc, node.r, lay)
                continue
            a, a0 = lay.Hn[j], lay.h0n[j]
            yc, r = node.yc, node.r
            s = float(a @ yc) + a0  # signed distance of the centre (positive: active side)
            # active side {a y + a0 >= 0}: row -a y <= a0 ; inactive {a y + a0 <= 0}: row a y <= -a0
            if s >= r:
                act, inact = (yc, r), None
            elif s <= -r:
                act, inact = None, (yc, r)
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
                    children.append(self._child(node, 0, node.ids + (2 * i,), np.vstack([node.A, a]),
                                                np.append(node.c, -a0), inact[0], inact[1], lay))
                else:
                    children.append(self._child(node, 0, node.ids, node.A, node.c, inact[0], inact[1], lay))
            if act is not None:
                if keep_row_a:
                    children.append(self._child(node, 1, node.ids + (2 * i + 1,), np.vstack([node.A, -a]),
                                                np.append(node.c, a0), act[0], act[1], lay))
                else:
                    children.append(self._child(node, 1, node.ids, node.A, node.c, act[0], act[1], lay))
            if not children:
                node = None  # numerically empty cell (cannot happen with a valid ball; kept safe)
                continue
            node = children.pop()
            stack.extend(children)


def enumerate_reference(problem: Problem):
    """Everything in one process with the oracle: (list of (bits, yc, r, ranks), stats)."""
    eng = ReferenceEngine(problem)
    out = []
    eng.explore(eng.root_item(), lambda b, y, r, rk: out.append((b, y, r, rk)))
    return out, eng.stats
