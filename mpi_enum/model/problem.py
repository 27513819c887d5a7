"""The enumeration problem: the network's hidden layers composed with the domain's coordinates.

Pure data (no I/O, no MPI).  May import: numpy.
"""
from __future__ import annotations

import numpy as np

from .network import _unit_rows, group_common_scale, normalised_layers


class Problem:
    """The network's hidden layers composed with the domain's coordinates, rescaled to unit rows.

    ``Ws[l]``, ``bs[l]``: layer l in the domain coordinates ``y`` (layer 0 composed with
    ``x = x0 + E y``), every row of unit norm (:func:`normalised_layers`): the same regions and
    patterns as the network, whatever the scale of its weights.  ``N`` counts every hidden neuron
    (the kernel's bits, work items); ``n_bits`` the gated ones (a region's pattern).
    """

    def __init__(self, net, domain, tol=1e-9):
        self.net = net
        self.domain = domain
        self.tol = float(tol)
        self.k = domain.k
        Ws = [np.asarray(W, dtype=np.float64) for W in net.weights[:-1]]
        bs = [np.asarray(b, dtype=np.float64) for b in net.biases[:-1]]
        # first layer in y coordinates: W0 (x0 + E y) + b0, computed on rows of unit scale so
        # that weights near the overflow threshold stay finite
        W0, b0, logs0 = group_common_scale(*_unit_rows(Ws[0], bs[0]), None if net.groups is None else net.groups[0])
        Ws[0], bs[0] = W0 @ domain.E, b0 + W0 @ domain.x0
        self.Ws, self.bs = normalised_layers(Ws, bs, logs0, groups=net.groups)
        self.widths = [W.shape[0] for W in self.Ws]
        self.L = len(self.widths)
        self.N = int(sum(self.widths))
        self.offsets = np.concatenate([[0], np.cumsum(self.widths)]).astype(int)
        self.layer_of = np.repeat(np.arange(self.L), self.widths)
        # scale of each layer's weights, for the relative "constant neuron" and rank tests
        self.wscale = [float(np.abs(W).max()) or 1.0 for W in self.Ws]
        # activations (the network IR): per neuron, the output factor on the inactive side
        # (0 ReLU) and the linear neurons (no hyperplane, no pattern bit); None: all ReLU
        relu = net.slopes is None and net.linear is None and net.groups is None
        self.slope = None if relu else np.concatenate([net.slope_of(l) for l in range(self.L)])
        self.linear = None if net.linear is None else np.concatenate([net.linear_of(l) for l in range(self.L)])
        #: max-group ids (int32 (N,), -1: none; None without max units)
        self.group = None if net.groups is None else np.concatenate(
            [np.where(net.group_of(l) >= 0, net.group_of(l) + 1_000_000 * l, -1) for l in range(self.L)]).astype(np.int32)
        #: positions of the pattern's bits among the N neurons (None: all of them)
        self.gated = None if self.linear is None else np.flatnonzero(~self.linear)
        self.n_bits = self.N if self.gated is None else int(len(self.gated))

    @property
    def pattern_bytes(self) -> int:
        """Bytes of a region's packed pattern (one bit per gated neuron)."""
        return (self.n_bits + 7) // 8
