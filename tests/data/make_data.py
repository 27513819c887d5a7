#!/usr/bin/env python3
"""Deterministic generator of the small fixture networks in tests/data/.

    python tests/data/make_data.py          # (re)write every fixture
The test suite calls :func:`ensure` to write any that are missing.

Fixtures
--------
small_d2_box.npz    d = 2, hidden [6, 5], 1 output, default box input_lo = (0, -1), input_hi = (2, 1)
small_d3.npz        d = 3, hidden [5, 4, 3], 2 outputs, no box (default domain [-1, 1]^3)
small_d3.nnet       d = 3, hidden [5, 4], 2 outputs, .nnet text with comments, trailing commas and
                    non-trivial means / ranges (input normalisation to fold)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _mlp(seed, d, widths, n_out, bias_scale=0.5):
    rng = np.random.default_rng(seed)
    Ws, bs, fan = [], [], d
    for w in list(widths) + [n_out]:
        Ws.append(np.round(rng.normal(size=(w, fan)) * np.sqrt(2.0 / fan), 6))
        bs.append(np.round(rng.normal(size=w) * bias_scale, 6))
        fan = w
    return Ws, bs


def _npz(path, Ws, bs, lo=None, hi=None):
    arrs = {}
    for i, (W, b) in enumerate(zip(Ws, bs)):
        arrs[f"W{i}"], arrs[f"b{i}"] = W, b
    if lo is not None:
        arrs["input_lo"], arrs["input_hi"] = np.asarray(lo, float), np.asarray(hi, float)
    with open(path, "wb") as f:
        np.savez(f, **arrs)


def _fmt(v):
    return repr(float(v))


def write_nnet(path, Ws, bs, mins, maxs, means, ranges, header_comments=("test fixture",)):
    """Write the Reluplex .nnet text format (Ws: weights of the *normalised* network)."""
    sizes = [Ws[0].shape[1]] + [W.shape[0] for W in Ws]
    lines = [f"// {c}" for c in header_comments]
    lines.append(f"{len(Ws)},{sizes[0]},{sizes[-1]},{max(sizes)},")
    lines.append(",".join(str(s) for s in sizes) + ",")
    lines.append("0,")
    for vec in (mins, maxs, means, ranges):
        lines.append(",".join(_fmt(v) for v in vec) + ",")
    for W, b in zip(Ws, bs):
        for row in W:
            lines.append(",".join(_fmt(v) for v in row) + ",")
        for v in b:
            lines.append(_fmt(v) + ",")
    Path(path).write_text("\n".join(lines) + "\n")


def _small_d2_box(path):
    Ws, bs = _mlp(101, 2, [6, 5], 1)
    # the box (0, -1)..(2, 1) is [-1, 1]^2 shifted; shift the first layer so the regions stay interesting
    bs[0] = bs[0] - Ws[0] @ np.array([1.0, 0.0])
    _npz(path, Ws, bs, [0.0, -1.0], [2.0, 1.0])


def _small_d3(path):
    Ws, bs = _mlp(102, 3, [5, 4, 3], 2)
    _npz(path, Ws, bs)


def _small_d3_nnet(path):
    Ws, bs = _mlp(103, 3, [5, 4], 2)
    mins = np.array([-10.0, 0.0, 100.0])
    maxs = np.array([10.0, 4.0, 300.0])
    means = np.array([1.0, 2.0, 200.0, 0.5])  # last entry: output mean (not folded)
    ranges = np.array([10.0, 2.0, 100.0, 3.0])  # last entry: output range
    write_nnet(path, Ws, bs, mins, maxs, means, ranges)


FIXTURES = {"small_d2_box.npz": _small_d2_box, "small_d3.npz": _small_d3, "small_d3.nnet": _small_d3_nnet}


def ensure(directory=HERE, force=False):
    directory = Path(directory)
    for name, fn in FIXTURES.items():
        p = directory / name
        if force or not p.exists():
            fn(p)
    return directory


if __name__ == "__main__":
    ensure(HERE, force="--keep" not in sys.argv)
    print("wrote", ", ".join(FIXTURES), "in", HERE)
