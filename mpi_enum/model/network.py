"""The network as data (the IR every loader produces): :class:`Network`, its validation, and
the random-MLP recipe.

A :class:`Network` is a chain of affine layers ``(W, b)`` with ``W`` of shape (out, in); every
layer but the last is followed by a piecewise-linear activation, one per neuron:

* ReLU (the default): ``max(z, 0)``;
* LeakyReLU / PReLU: ``z`` for ``z > 0``, ``slope * z`` otherwise (``slopes[l][j]``; ReLU is
  slope 0).  Its pattern bit is the ReLU's: 1 iff ``z > 0``;
* linear (``linear[l][j]`` True): ``z`` everywhere.  A linear neuron has no hyperplane and no
  pattern bit: it carries a value past a layer (the skip path of a residual block, one side of a
  concatenation), so that every DAG of affine maps and activations becomes a chain.

The pattern of a region holds one bit per *gated* (non-linear) neuron, layer-major: for a network
without linear neurons it is today's ReLU pattern.  :attr:`Network.hidden_widths` counts the
gated neurons per layer (the pattern's layout); :attr:`Network.layer_widths` all neurons.
No file I/O here (the loaders in :mod:`mpi_enum.loaders` read files and call :func:`validate`),
no MPI.

May import: numpy, :mod:`mpi_enum.errors`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError


@dataclass
class Network:
    weights: list  # W0 .. WL, float64, shape (out, in)
    biases: list  # b0 .. bL, float64, shape (out,)
    input_lo: np.ndarray | None = None  # default domain box, if the file has one
    input_hi: np.ndarray | None = None
    source: str = ""
    sha256: str = ""
    meta: dict = field(default_factory=dict)
    slopes: list | None = None  # per hidden layer: float64 (width,), the slope below 0 (0: ReLU)
    linear: list | None = None  # per hidden layer: bool (width,), True: no activation, no bit
    groups: list | None = None  # per hidden layer: int (width,), max-group id (-1: none)

    @property
    def input_dim(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def layer_widths(self) -> list:
        """All neurons of each hidden layer (gated and linear)."""
        return [int(W.shape[0]) for W in self.weights[:-1]]

    @property
    def hidden_widths(self) -> list:
        """Gated neurons of each hidden layer: the pattern's layout (all neurons for ReLU nets)."""
        if self.linear is None:
            return self.layer_widths
        return [int(np.count_nonzero(~np.asarray(m, bool))) for m in self.linear]

    @property
    def n_hidden(self) -> int:
        return sum(self.hidden_widths)

    @property
    def is_relu(self) -> bool:
        """True if every hidden neuron is a ReLU (the result file's version-2 layout)."""
        return (self.linear is None or not any(np.any(m) for m in self.linear)) and (
            self.slopes is None or not any(np.any(np.asarray(s) != 0) for s in self.slopes)) and (
            self.groups is None)

    def group_of(self, l) -> np.ndarray:
        """Max-group ids of hidden layer l's neurons (-1: not a max unit's input)."""
        w = self.layer_widths[l]
        return np.full(w, -1, np.int64) if self.groups is None else np.asarray(self.groups[l], np.int64)

    def group_members(self, l) -> list:
        """The neuron indices (int arrays) of each max group of hidden layer l, in the order of the
        groups' positions (each group is one contiguous run: :func:`validate`)."""
        g = self.group_of(l)
        if not np.any(g >= 0):
            return []
        starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        ends = np.r_[starts[1:], len(g)]
        return [np.arange(a, e) for a, e in zip(starts, ends) if g[a] >= 0]

    def _onehot(self, l, z):
        """(n, w) bool: the first maximum of each max group of layer l (False outside groups)."""
        out = np.zeros(z.shape, bool)
        for idx in self.group_members(l):
            out[np.arange(len(z)), idx[np.argmax(z[:, idx], axis=1)]] = True
        return out

    def _margins(self, l, z):
        """For max-group members: z_j minus the largest other member (> 0 iff j is the strict
        maximum); other neurons: z itself."""
        m = z.copy()
        for idx in self.group_members(l):
            zz = z[:, idx]
            if len(idx) == 1:  # a group of one is always its own maximum
                m[:, idx] = np.inf
                continue
            top = np.sort(zz, axis=1)
            best, second = top[:, -1:], top[:, -2:-1]
            m[:, idx] = zz - np.where(zz >= best, second, best)
        return m

    def group_spans(self) -> np.ndarray:
        """The max groups as (start, size) rows (int64 (G, 2)) in pattern-bit positions,
        layer-major: group q's one-hot bits are ``pattern[start:start + size]`` (members are never
        linear, so a group's bits are contiguous too)."""
        if self.groups is None:
            return np.zeros((0, 2), np.int64)
        bit = np.full(sum(self.layer_widths), -1, np.int64)  # each neuron's pattern bit
        bit[self.gated_index()] = np.arange(self.n_hidden)
        offs = np.cumsum([0] + self.layer_widths)
        spans = [(bit[offs[l] + idx[0]], len(idx)) for l in range(len(self.layer_widths))
                 for idx in self.group_members(l)]
        return np.array(spans, np.int64).reshape(-1, 2)

    def selectors(self, bits) -> np.ndarray:
        """Patterns (n, N) -> int16 (n, G): each max group's selected member (its one-hot bit's
        position within the group; the result file's ``/regions/selector``)."""
        bits = np.asarray(bits)
        spans = self.group_spans()
        out = np.zeros((bits.shape[0], len(spans)), np.int16)
        for q, (s, k) in enumerate(spans):
            out[:, q] = np.argmax(bits[:, s:s + k], axis=1)
        return out

    def slope_of(self, l) -> np.ndarray:
        """The slopes of hidden layer l below 0, with 1.0 for linear neurons (0 for max-group
        members: an input that is not its group's maximum outputs 0)."""
        w = self.layer_widths[l]
        s = np.zeros(w) if self.slopes is None else np.asarray(self.slopes[l], np.float64).copy()
        if self.linear is not None:
            s[np.asarray(self.linear[l], bool)] = 1.0
        if self.groups is not None:
            s[self.group_of(l) >= 0] = 0.0
        return s

    def same_units(self, other) -> bool:
        """Whether ``other`` has the same activations (slopes, linear neurons, max groups)."""
        L = len(self.layer_widths)
        return L == len(other.layer_widths) and all(
            np.array_equal(f(self, l), f(other, l)) for l in range(L)
            for f in (Network.slope_of, Network.linear_of, Network.group_of))

    def linear_of(self, l) -> np.ndarray:
        w = self.layer_widths[l]
        return np.zeros(w, bool) if self.linear is None else np.asarray(self.linear[l], bool)

    def gated_index(self) -> np.ndarray:
        """Positions (layer-major, among all hidden neurons) of the gated neurons: pattern bit q is
        the neuron ``gated_index()[q]``."""
        lin = np.concatenate([self.linear_of(l) for l in range(len(self.layer_widths))])
        return np.flatnonzero(~lin)

    def expand_bits(self, bits) -> np.ndarray:
        """Patterns (n, N) 0/1 over the gated neurons -> (n, all neurons), linear neurons 1 (their
        output is their pre-activation, as an active neuron's)."""
        bits = np.asarray(bits)
        if self.linear is None:
            return bits
        full = np.ones((bits.shape[0], sum(self.layer_widths)), dtype=bits.dtype)
        full[:, self.gated_index()] = bits
        return full

    def gates(self, bits_all, l) -> np.ndarray:
        """Factors (n, width_l) of layer l's outputs given the all-neuron bits (n, all): 1 where
        the bit is 1, the neuron's slope where it is 0 (0 for ReLU), 1 for linear neurons."""
        off = sum(self.layer_widths[:l])
        w = self.layer_widths[l]
        b = np.asarray(bits_all)[:, off:off + w] > 0
        return np.where(b, 1.0, self.slope_of(l)[None, :])

    def gate_factors(self, bits) -> np.ndarray:
        """Patterns (n, N) over the gated neurons -> output factors (n, all neurons): 1 for an
        active or linear neuron, the slope (0 for ReLU) for an inactive one."""
        full = self.expand_bits(bits)
        return np.concatenate([self.gates(full, l) for l in range(len(self.layer_widths))], axis=1)

    def activate(self, l, z):
        """Layer l's activation applied to its pre-activations z (n, width_l).  A max group's
        members output z where they are the (first) maximum, else 0: their sum is the max."""
        if self.slopes is None and self.linear is None and self.groups is None:
            return np.maximum(z, 0.0)
        out = np.where(z > 0.0, z, z * self.slope_of(l)[None, :])
        if self.groups is not None:
            g = self.group_of(l) >= 0
            out[:, g] = np.where(self._onehot(l, z)[:, g], z[:, g], 0.0)
        return out

    def layer_bits(self, l, z):
        """Layer l's bits (n, width_l) from its pre-activations: z > 0, or for max-group members
        whether they are the (first) maximum."""
        b = z > 0.0
        if self.groups is not None:
            g = self.group_of(l) >= 0
            b[:, g] = self._onehot(l, z)[:, g]
        return b

    def default_box(self):
        d = self.input_dim
        if self.input_lo is not None:
            return self.input_lo.copy(), self.input_hi.copy()
        return -np.ones(d), np.ones(d)

    def forward_preacts(self, X, all_neurons=False, margins=False):
        """Pre-activations of the gated hidden neurons (of all, with ``all_neurons``), layer-major:
        array (n, N).  With ``margins``, a max-group member's entry is its margin over the
        largest other member instead (its sign is the member's bit)."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        out, h = [], X
        for l, (W, b) in enumerate(zip(self.weights[:-1], self.biases[:-1])):
            z = h @ W.T + b
            out.append(self._margins(l, z) if margins and self.groups is not None else z)
            h = self.activate(l, z)
        Z = np.concatenate(out, axis=1) if out else np.zeros((X.shape[0], 0))
        return Z if all_neurons or self.linear is None else Z[:, self.gated_index()]

    def patterns(self, X):
        """Activation patterns (bool, (n, N)); ties (pre-activation exactly 0) are inactive; a max
        group's bits are one-hot (its first maximum)."""
        if self.groups is None:
            return self.forward_preacts(X) > 0.0
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        out, h = [], X
        for l, (W, b) in enumerate(zip(self.weights[:-1], self.biases[:-1])):
            z = h @ W.T + b
            out.append(self.layer_bits(l, z))
            h = self.activate(l, z)
        B = np.concatenate(out, axis=1)
        return B if self.linear is None else B[:, self.gated_index()]

    def normalised(self) -> "Network":
        """The same network with every hidden neuron's weight row of unit norm (cached).

        Its regions, patterns and ranks are the network's (:func:`normalised_layers`); its
        outputs are the network's divided by one positive constant (argmax and equality of
        affine maps are kept).  Geometry (half-spaces, ranks, volumes) is computed on it, so that
        no threshold depends on the scale of the weights.
        """
        cached = self.meta.get("_normalised")
        if cached is not None:
            return cached
        Ws, bs, logs = normalised_layers(self.weights[:-1], self.biases[:-1], return_logs=True, groups=self.groups)
        top = float(logs.max()) if logs.size else 0.0
        Wo = np.asarray(self.weights[-1], np.float64) * np.exp(logs - top)[None, :]
        bo = (np.asarray(self.biases[-1], np.float64) * np.exp(-top / 2)) * np.exp(-top / 2)
        net = Network(Ws + [Wo], bs + [bo], self.input_lo, self.input_hi, self.source, self.sha256,
                      {"normalised": True}, self.slopes, self.linear, self.groups)
        net.meta["_normalised"] = net
        self.meta["_normalised"] = net
        return net

    def forward(self, X):
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        h = X
        for i, (W, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ W.T + b
            if i < len(self.weights) - 1:
                h = self.activate(i, h)
        return h


def _unit_rows(W, b):
    """Divide each row of (W, b) by the norm of its W part, without overflow or underflow
    (entries up to 1e308 or down to subnormals).  Returns (W', b', log of the factors); a row with
    W exactly zero is a constant neuron: it is divided by |b| (or 1 when b is 0 too)."""
    m = np.abs(W).max(axis=1) if W.size else np.zeros(len(W))
    zero = ~(m > 0)
    m1 = np.where(zero, 1.0, m)
    Wm = W / m1[:, None]  # largest entry of each row is now 1
    n = np.where(zero, 1.0, np.linalg.norm(Wm, axis=1))
    Wn = Wm / n[:, None]
    bm = b / m1
    bn = np.where(zero, np.sign(b), bm / n)
    with np.errstate(divide="ignore"):
        logs = np.where(zero, np.where(b != 0, np.log(np.abs(np.where(b != 0, b, 1.0))), 0.0), np.log(m1) + np.log(n))
    return Wn, bn, logs


def group_common_scale(Wn, bn, logs, group):
    """Make the members of each max group (``group`` (w,) ids, -1: none) share one factor: the
    largest of theirs.  A max is positively homogeneous only under one factor for all its inputs
    (max(a / s, b / s) = max(a, b) / s), so per-row factors would move its comparisons."""
    if group is None:
        return Wn, bn, logs
    group = np.asarray(group)
    for gid in np.unique(group[group >= 0]):
        idx = np.flatnonzero(group == gid)
        top = float(logs[idx].max())
        f = np.exp(logs[idx] - top)  # <= 1: no overflow
        Wn[idx] *= f[:, None]
        bn[idx] *= f
        logs[idx] = top
    return Wn, bn, logs


def normalised_layers(Ws, bs, logs0=None, return_logs=False, groups=None):
    """The hidden layers rescaled so that every neuron's weight row has unit norm.

    A positive factor on a neuron's row and bias moves no hyperplane (relu(z / s) = relu(z) / s,
    and so for every activation of :class:`Network`: they are positively homogeneous),
    and multiplying the next layer's column by the same factor restores its input exactly, so the
    activation regions and patterns are unchanged.  The engine then sees weights of order 1
    whatever the scale of the file (1e+300 or subnormal): every threshold it applies is relative.
    The factors are carried as logarithms, so that their products never overflow.  ``logs0``:
    the log factors by which layer 0's rows were already divided (their outputs are smaller by
    those factors too; one factor per max group, as here).  ``groups``: the layers' max-group ids
    (members share one factor, :func:`group_common_scale`).
    """
    out_W, out_b = [], []
    logs = None  # log of the factor each input of this layer was divided by
    for l, (W, b) in enumerate(zip(Ws, bs)):
        W = np.asarray(W, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        top = 0.0
        if logs is not None and logs.size:
            # the true layer is (W * exp(logs) per column, b); divide it all by exp(max(logs))
            top = float(logs.max())
            W = W * np.exp(logs - top)[None, :]
            b = (b * np.exp(-top / 2)) * np.exp(-top / 2)
        Wn, bn, logs = _unit_rows(W, b)
        Wn, bn, logs = group_common_scale(Wn, bn, logs, None if groups is None else groups[l])
        logs = logs + top  # this layer's outputs are smaller than the true ones by exp(logs)
        if l == 0 and logs0 is not None:
            logs = logs + logs0
        out_W.append(Wn)
        out_b.append(bn)
    if return_logs:
        return out_W, out_b, (logs if logs is not None else np.zeros(0))
    return out_W, out_b


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
    _validate_units(net, path)
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


def _validate_units(net: Network, path: str) -> None:
    """Check and convert ``slopes`` and ``linear`` (one array per hidden layer, or None)."""
    widths = [int(W.shape[0]) for W in net.weights[:-1]]
    for name, kind in (("slopes", np.float64), ("linear", bool)):
        arrs = getattr(net, name)
        if arrs is None:
            continue
        if len(arrs) != len(widths):
            raise InputError(f"{path}: {name} has {len(arrs)} arrays for {len(widths)} hidden layers")
        out = []
        for l, (a, w) in enumerate(zip(arrs, widths)):
            a = np.asarray(a)
            if a.shape != (w,):
                raise InputError(f"{path}: {name} of hidden layer {l} has shape {a.shape}, expected ({w},)")
            if kind is bool:
                if a.dtype != bool and not (np.issubdtype(a.dtype, np.number) and np.all((a == 0) | (a == 1))):
                    raise InputError(f"{path}: linear of hidden layer {l} must be booleans (0/1)")
            elif not (np.issubdtype(a.dtype, np.number) and not np.iscomplexobj(a) and np.all(np.isfinite(a))):
                raise InputError(f"{path}: slopes of hidden layer {l} must be finite real numbers")
            out.append(np.ascontiguousarray(a, dtype=kind))
        setattr(net, name, out)
    if net.linear is not None and not any(np.any(~m) for m in net.linear):
        raise InputError(f"{path}: every hidden neuron is linear: the network is affine, with no activation "
                         "regions to enumerate")
    if net.groups is not None:
        if len(net.groups) != len(widths):
            raise InputError(f"{path}: groups has {len(net.groups)} arrays for {len(widths)} hidden layers")
        out = []
        for l, (g, w) in enumerate(zip(net.groups, widths)):
            g = np.asarray(g)
            if g.shape != (w,) or not np.issubdtype(g.dtype, np.integer):
                raise InputError(f"{path}: groups of hidden layer {l} must be integers of shape ({w},)")
            ids = g[g >= 0]
            starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]] & (g >= 0))
            if len(np.unique(ids)) != len(starts):
                raise InputError(f"{path}: a max group of hidden layer {l} is not one contiguous run of neurons")
            lin = net.linear_of(l) if net.linear is not None else np.zeros(w, bool)
            if np.any(lin & (g >= 0)):
                raise InputError(f"{path}: a neuron of hidden layer {l} is both linear and in a max group")
            out.append(g.astype(np.int64))
        net.groups = out if any(np.any(g >= 0) for g in out) else None
    drop_trivial_units(net)


def drop_trivial_units(net: Network) -> Network:
    """All-zero slopes (every neuron a ReLU) and no linear neuron are stored as None: the ReLU
    network's own representation (what the engine and the result file treat as plain ReLU)."""
    if net.linear is not None and not any(np.any(m) for m in net.linear):
        net.linear = None
    if net.slopes is not None and not any(np.any(np.asarray(s) != 0) for s in net.slopes):
        net.slopes = None
    return net


def random_mlp(d, widths, seed=0, n_out=1, bias_scale=0.1):
    """Arrays of a random He-initialised ReLU MLP over [-1, 1]^d, in the ``.npz`` layout.

    The recipe of ``../shared/bench/make_nets.py`` (the benchmark networks): weights
    N(0, 2/fan_in), biases N(0, bias_scale^2) (default 0.1), one generator seeded with ``seed``.
    The one random-network recipe of the project: tests and benchmarks derive theirs from it.
    """
    rng = np.random.default_rng(seed)
    arrays, n_in = {}, d
    for i, w in enumerate(list(widths) + [n_out]):
        arrays[f"W{i}"] = rng.normal(0.0, np.sqrt(2.0 / n_in), (w, n_in))
        arrays[f"b{i}"] = rng.normal(0.0, bias_scale, w)
        n_in = w
    arrays["input_lo"], arrays["input_hi"] = -np.ones(d), np.ones(d)
    return arrays
