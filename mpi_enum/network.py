"""Network loaders (CONTRACT §1): ``.npz`` and ``.nnet`` (``.onnx``/``.pt`` in :mod:`mpi_enum.formats`).

A :class:`Network` is a list of affine layers ``(W, b)`` with ``W`` of shape (out, in); every
layer but the last is followed by ReLU.  Loaders validate everything a user can get wrong and
raise :class:`~mpi_enum.errors.InputError` with a one-line message naming the file.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError


@dataclass
class Network:
    weights: list  # W0 .. WL, float64, shape (out, in)
    biases: list  # b0 .. bL, float64, shape (out,)
    input_lo: np.ndarray | None = None  # default domain box, if the file has one
    input_hi: np.ndarray | None = None
    source: str = ""
    sha256: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def input_dim(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def hidden_widths(self) -> list:
        return [int(W.shape[0]) for W in self.weights[:-1]]

    @property
    def n_hidden(self) -> int:
        return sum(self.hidden_widths)

    def default_box(self):
        d = self.input_dim
        if self.input_lo is not None:
            return self.input_lo.copy(), self.input_hi.copy()
        return -np.ones(d), np.ones(d)

    def forward_preacts(self, X):
        """Pre-activations of all hidden neurons, layer-major: array (n, N)."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        out, h = [], X
        for W, b in zip(self.weights[:-1], self.biases[:-1]):
            z = h @ W.T + b
            out.append(z)
            h = np.maximum(z, 0.0)
        return np.concatenate(out, axis=1) if out else np.zeros((X.shape[0], 0))

    def patterns(self, X):
        """Activation patterns (bool, (n, N)); ties (pre-activation exactly 0) are inactive."""
        return self.forward_preacts(X) > 0.0

    def forward(self, X):
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        h = X
        for i, (W, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ W.T + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return h


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def validate(net: Network, path: str) -> Network:
    """Check shapes and finiteness; convert to float64.  Raises InputError."""
    if not net.weights:
        raise InputError(f"{path}: the network has no layers")
    if len(net.weights) < 2:
        raise InputError(f"{path}: the network has no hidden ReLU layer (need at least W0, b0, W1, b1)")
    Ws, bs = [], []
    n_in = None
    for i, (W, b) in enumerate(zip(net.weights, net.biases)):
        W = np.asarray(W)
        b = np.asarray(b)
        if W.ndim != 2:
            raise InputError(f"{path}: W{i} must be a 2-D array (out, in), got shape {W.shape}")
        if b.ndim != 1 or b.shape[0] != W.shape[0]:
            raise InputError(f"{path}: b{i} has shape {b.shape}, expected ({W.shape[0]},) to match W{i}")
        if W.shape[0] == 0 or W.shape[1] == 0:
            raise InputError(f"{path}: W{i} has an empty shape {W.shape}")
        if n_in is not None and W.shape[1] != n_in:
            raise InputError(f"{path}: mismatched layer shapes: W{i} takes {W.shape[1]} inputs but layer {i - 1} has {n_in} outputs")
        if not (np.issubdtype(W.dtype, np.number) and np.issubdtype(b.dtype, np.number)):
            raise InputError(f"{path}: W{i}/b{i} are not numeric arrays")
        if np.iscomplexobj(W) or np.iscomplexobj(b):  # astype(float64) would drop the imaginary part
            raise InputError(f"{path}: W{i}/b{i} are complex arrays; real weights are needed")
        W = W.astype(np.float64)
        b = b.astype(np.float64)
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
            raise InputError(f"{path}: layer {i} has NaN or Inf weights")
        Ws.append(W)
        bs.append(b)
        n_in = W.shape[0]
    net.weights, net.biases = Ws, bs
    d = Ws[0].shape[1]
    if (net.input_lo is None) != (net.input_hi is None):
        raise InputError(f"{path}: input_lo and input_hi must be given together")
    if net.input_lo is not None:
        lo = np.asarray(net.input_lo, dtype=np.float64).reshape(-1)
        hi = np.asarray(net.input_hi, dtype=np.float64).reshape(-1)
        if lo.shape != (d,) or hi.shape != (d,):
            raise InputError(f"{path}: input_lo/input_hi must have shape ({d},), got {lo.shape} and {hi.shape}")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise InputError(f"{path}: input_lo/input_hi contain NaN or Inf")
        if np.any(lo > hi):
            raise InputError(f"{path}: input_lo > input_hi in coordinate {int(np.argmax(lo > hi))}")
        net.input_lo, net.input_hi = lo, hi
    return net


def load_npz(path: str) -> Network:
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            n_layers = 0
            while f"W{n_layers}" in files:
                n_layers += 1
            if n_layers == 0:
                raise InputError(f"{path}: no arrays W0, b0, ... found (keys: {sorted(files)[:8]})")
            stray = sorted(k for k in files if k[:1] in "Wb" and k[1:].isdigit() and int(k[1:]) >= n_layers)
            if stray:  # e.g. W0, W1, W3: silently dropping W3 would enumerate a different network
                raise InputError(f"{path}: {stray[0]} is given but W{n_layers} is missing (layers must be W0, b0, W1, b1, ...)")
            Ws, bs = [], []
            for i in range(n_layers):
                if f"b{i}" not in files:
                    raise InputError(f"{path}: W{i} has no matching b{i}")
                Ws.append(np.array(z[f"W{i}"]))
                bs.append(np.array(z[f"b{i}"]))
            lo = np.array(z["input_lo"]) if "input_lo" in files else None
            hi = np.array(z["input_hi"]) if "input_hi" in files else None
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a readable .npz network ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'corrupt'})") from None
    except Exception as exc:  # zlib.error, struct.error, ... from truncated archives
        raise InputError(f"{path}: not a readable .npz network ({type(exc).__name__})") from None
    return Network(Ws, bs, lo, hi, source=path)


def load_nnet(path: str) -> Network:
    """ACAS Xu / Reluplex ``.nnet``: input normalisation folded into the first layer."""
    try:
        with open(path, "r", encoding="utf-8", errors="strict") as f:
            lines = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("//")]
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text .nnet file") from None

    def row(i, what):
        if i >= len(lines):
            raise InputError(f"{path}: truncated .nnet file (missing {what})")
        try:
            return [float(t) for t in lines[i].replace(",", " ").split()]
        except ValueError:
            raise InputError(f"{path}: malformed .nnet line {i + 1} ({what}): {lines[i][:60]!r}") from None

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
                raise InputError(f"{path}: line {pos + 1}: layer {li} weight row has {len(r)} entries, expected {sizes[li]}")
            rows.append(r)
            pos += 1
        b = []
        for _ in range(sizes[li + 1]):
            r = row(pos, f"biases of layer {li}")
            if len(r) != 1:
                raise InputError(f"{path}: line {pos + 1}: a bias line must hold one number")
            b.append(r[0])
            pos += 1
        Ws.append(np.array(rows))
        bs.append(np.array(b))
    mu, rg = means[:n_in], ranges[:n_in]
    W0 = Ws[0] / rg[None, :]
    bs[0] = bs[0] - Ws[0] @ (mu / rg)
    Ws[0] = W0
    return Network(Ws, bs, mins, maxs, source=path, meta={"format": "nnet"})


def load_network(path: str) -> Network:
    """Load and validate a network; the loader is chosen by extension (CONTRACT §1)."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a network file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        net = load_npz(path)
    elif ext == ".nnet":
        net = load_nnet(path)
    elif ext in (".onnx", ".pt", ".pth"):
        from . import formats  # optional dependencies live there

        net = formats.load(path, ext)
    else:
        raise InputError(f"{path}: unsupported network format {ext!r} (use .npz, .nnet, .onnx, .pt or .pth)")
    net = validate(net, path)
    net.source = path
    net.sha256 = file_sha256(path)
    return net


def random_mlp(d, widths, seed=0, n_out=1):
    """Arrays of a random He-initialised ReLU MLP over [-1, 1]^d, in the ``.npz`` layout.

    The recipe of ``../shared/bench/make_nets.py`` (the benchmark networks): weights
    N(0, 2/fan_in), biases N(0, 0.1^2), one generator seeded with ``seed``.
    """
    rng = np.random.default_rng(seed)
    arrays, n_in = {}, d
    for i, w in enumerate(list(widths) + [n_out]):
        arrays[f"W{i}"] = rng.normal(0.0, np.sqrt(2.0 / n_in), (w, n_in))
        arrays[f"b{i}"] = rng.normal(0.0, 0.1, w)
        n_in = w
    arrays["input_lo"], arrays["input_hi"] = -np.ones(d), np.ones(d)
    return arrays
