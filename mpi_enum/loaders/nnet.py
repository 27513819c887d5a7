"""``.nnet`` networks (ACAS Xu / Reluplex text format); the input normalisation is folded into the first layer."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..model.network import Network


def load_nnet(path: str) -> Network:
    """ACAS Xu / Reluplex ``.nnet``: input normalisation folded into the first layer."""
    try:
        with open(path, "r", encoding="utf-8", errors="strict") as f:
            # (line number in the file, text) of every data line: messages name the file's own lines
            numbered = [(no, ln.strip()) for no, ln in enumerate(f, start=1)
                        if ln.strip() and not ln.lstrip().startswith("//")]
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text .nnet file") from None
    lines = [t for _, t in numbered]

    def lineno(i):
        return numbered[i][0] if i < len(numbered) else (numbered[-1][0] + 1 if numbered else 1)

    def row(i, what):
        if i >= len(lines):
            raise InputError(f"{path}: truncated .nnet file (missing {what})")
        try:
            return [float(t) for t in lines[i].replace(",", " ").split()]
        except ValueError:
            raise InputError(f"{path}: malformed .nnet line {lineno(i)} ({what}): {lines[i][:60]!r}") from None

    hdr = row(0, "header")
    def counts(vals):  # positive integers only (NaN/Inf/fractions would crash or truncate int())
        return all(np.isfinite(v) and v == int(v) and v >= 1 for v in vals)

    if len(hdr) < 3 or not counts(hdr[:3]):
        raise InputError(f"{path}: malformed .nnet header {lines[0][:60]!r}")
    n_layers, n_in, n_out = int(hdr[0]), int(hdr[1]), int(hdr[2])
    sizes = row(1, "layer sizes")
    if not counts(sizes):
        raise InputError(f"{path}: malformed .nnet layer sizes {lines[1][:60]!r}")
    sizes = [int(v) for v in sizes]
    if len(sizes) != n_layers + 1 or sizes[0] != n_in or sizes[-1] != n_out or min(sizes) < 1:
        raise InputError(f"{path}: layer sizes {sizes} do not match the header ({n_layers} layers, {n_in} inputs, {n_out} outputs)")
    mins = np.array(row(3, "input minimums"))
    maxs = np.array(row(4, "input maximums"))
    means = np.array(row(5, "means"))
    ranges = np.array(row(6, "ranges"))
    if mins.size != n_in or maxs.size != n_in or means.size < n_in or ranges.size < n_in:
        raise InputError(f"{path}: normalisation rows do not have {n_in} input entries")
    if np.any(ranges[:n_in] == 0):
        raise InputError(f"{path}: an input range is zero")
    pos = 7
    Ws, bs = [], []
    for li in range(n_layers):
        rows = []
        for _ in range(sizes[li + 1]):
            r = row(pos, f"weights of layer {li}")
            if len(r) != sizes[li]:
                raise InputError(f"{path}: line {lineno(pos)}: layer {li} weight row has {len(r)} entries, expected {sizes[li]}")
            rows.append(r)
            pos += 1
        b = []
        for _ in range(sizes[li + 1]):
            r = row(pos, f"biases of layer {li}")
            if len(r) != 1:
                raise InputError(f"{path}: line {lineno(pos)}: a bias line must hold one number")
            b.append(r[0])
            pos += 1
        Ws.append(np.array(rows))
        bs.append(np.array(b))
    mu, rg = means[:n_in], ranges[:n_in]
    W0 = Ws[0] / rg[None, :]
    bs[0] = bs[0] - Ws[0] @ (mu / rg)
    Ws[0] = W0
    return Network(Ws, bs, mins, maxs, source=path, meta={"format": "nnet"})
