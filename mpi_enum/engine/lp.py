"""Chebyshev-ball linear programs with one reused HiGHS model (no MPI here).

The engine asks one question: for the cell {y : G y <= h, A y <= c} and a half-space
``a y <= c0`` (all rows of unit norm), what is the largest ball radius t (capped at ``cap``)
that fits in their intersection, and where is its centre?

    maximise t  s.t.  G y + t <= h,  A y + t <= c,  a y + t <= c0,  t <= cap.

t is free below, so the LP is always feasible; t < 0 means the set is empty.  The model keeps
the domain rows permanently and mirrors the depth-first path's rows incrementally (rows are
identified by an id; only the part after the common prefix is deleted and re-added), so HiGHS
warm-starts from the previous basis.  Any non-optimal status falls back to a fresh solve with
scipy's HiGHS wrapper, so a numerical hiccup never silently drops a region.
"""
from __future__ import annotations

import numpy as np

from .native import BALL_CAP

try:
    import highspy
except ImportError:  # pragma: no cover - highspy is a hard dependency in pyproject
    highspy = None


def _new_highs():
    """A silent ``highspy.Highs()``: its constructor prints a banner on the C-level stdout
    (once per rank) before ``output_flag`` can be turned off, so stdout is muted around it."""
    import os
    import sys

    try:
        sys.stdout.flush()
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no real stdout (pytest capture, embedding)
        return highspy.Highs()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            hs = highspy.Highs()
            hs.setOptionValue("output_flag", False)
    finally:
        os.dup2(saved, fd)
        os.close(saved)
    return hs


class ChebyshevLP:
    def __init__(self, k, G, h, cap=BALL_CAP):
        self.k = int(k)
        self.G = np.asarray(G, dtype=np.float64)
        self.h = np.asarray(h, dtype=np.float64)
        self.cap = float(cap)
        self.n_solved = 0
        self.n_fallback = 0
        self._ids = []  # ids of the dynamic rows now in the model
        self._idx = np.arange(self.k + 1, dtype=np.int32)
        self._patterns = {}
        self._build()

    def _build(self):
        hs = _new_highs()
        hs.setOptionValue("output_flag", False)
        hs.setOptionValue("presolve", "off")
        hs.setOptionValue("solver", "simplex")
        inf = highspy.kHighsInf
        self._inf = inf
        k = self.k
        hs.addVars(k + 1, np.full(k + 1, -inf), np.concatenate([np.full(k, inf), [self.cap]]))
        hs.changeColCost(k, -1.0)
        self.hs = hs
        self._n_base = 0
        if len(self.G):
            self._add_rows(self.G, self.h)
        self._n_base = len(self.G)

    def _pattern(self, m):
        """Column indices, row starts and lower bounds of m dense rows (cached: every LP adds rows)."""
        pat = self._patterns.get(m)
        if pat is None:
            k1 = self.k + 1
            pat = (np.tile(self._idx, m), np.arange(0, m * k1, k1, dtype=np.int32), np.full(m, -self._inf))
            self._patterns[m] = pat
        return pat

    def _add_rows(self, A, c):
        m = len(A)
        if m == 0:
            return
        k = self.k
        vals = np.empty((m, k + 1))
        vals[:, :k] = A
        vals[:, k] = 1.0
        idx, starts, lo = self._pattern(m)
        self.hs.addRows(m, lo, np.asarray(c, dtype=np.float64), m * (k + 1), starts, idx, vals.ravel())

    def _sync(self, ids, A, c):
        cur = self._ids
        n = min(len(cur), len(ids))
        p = 0
        while p < n and cur[p] == ids[p]:
            p += 1
        if p < len(cur):
            first = self._n_base + p
            last = self._n_base + len(cur)
            self.hs.deleteRows(last - first, np.arange(first, last, dtype=np.int32))
            del cur[p:]
        if p < len(ids):
            self._add_rows(A[p:], c[p:])
            cur.extend(ids[p:])

    def solve(self, ids, A, c, a=None, c0=None):
        """Return (t, y) for the cell rows (ids, A, c) plus the optional extra row (a, c0)."""
        self._sync(ids, A, c)
        extra = a is not None
        if extra:
            self._add_rows(a[None, :], np.array([c0]))
        self.n_solved += 1
        hs = self.hs
        hs.run()
        ok = hs.getModelStatus() == highspy.HighsModelStatus.kOptimal
        if ok:
            x = np.array(hs.getSolution().col_value)
        if extra:
            r = hs.getNumRow() - 1
            hs.deleteRows(1, np.array([r], dtype=np.int32))
        if not ok:
            return self._fallback(A, c, a, c0)
        return float(x[self.k]), x[: self.k]

    def _fallback(self, A, c, a, c0):
        from scipy.optimize import linprog

        self.n_fallback += 1
        rows = [self.G, A] + ([a[None, :]] if a is not None else [])
        rhs = [self.h, c] + ([np.array([c0])] if a is not None else [])
        R = np.vstack([r for r in rows if len(r)]) if any(len(r) for r in rows) else np.zeros((0, self.k))
        b = np.concatenate([r for r in rhs if len(r)]) if len(R) else np.zeros(0)
        obj = np.zeros(self.k + 1)
        obj[-1] = -1.0
        if len(R) == 0:
            return self.cap, np.zeros(self.k)
        res = linprog(obj, A_ub=np.hstack([R, np.ones((len(R), 1))]), b_ub=b,
                      bounds=[(None, None)] * self.k + [(None, self.cap)], method="highs")
        # the model may be in a bad state: rebuild it from scratch
        self._ids = []
        self._build()
        if res.status != 0:
            raise RuntimeError(f"Chebyshev LP failed in HiGHS and scipy (status {res.status}: {res.message})")
        return float(res.x[-1]), res.x[:-1]
