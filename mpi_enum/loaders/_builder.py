"""The dense-layer accumulator shared by the ONNX and PyTorch loaders."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..model.network import Network


class Builder:
    """Accumulates dense layers: the current (pending) affine map of the data in the last ReLU output."""

    def __init__(self, path):
        self.path = path
        self.layers = []  # completed (W, b), each followed by ReLU
        self.n_in = None

    def finish(self, A, c, meta):
        """The pending map (A, c) becomes the output layer."""
        Ws = [W for W, _ in self.layers] + [A]
        bs = [b for _, b in self.layers] + [c]
        if len(Ws) < 2:
            raise InputError(f"{self.path}: the model has no ReLU: it is affine, with no activation regions to enumerate")
        return Network([np.asarray(W, np.float64) for W in Ws], [np.asarray(b, np.float64) for b in bs],
                       source=self.path, meta=meta)
