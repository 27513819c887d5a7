"""The layer accumulator shared by the ONNX and PyTorch loaders: how a DAG of affine maps and
activations is lowered to the chain of :class:`~mpi_enum.model.network.Network`.

Owns the layers and their neurons, not the tensors: a loader keeps every data tensor as an affine
map ``flat(tensor) = A @ s + c`` of the current *state* ``s`` (the input, then the outputs of the
last hidden layer) and calls :meth:`Builder.activate` at each activation.  The new hidden layer is

* the activated tensor's entries (C order): gated neurons, each with its slope below 0
  (0: ReLU, else LeakyReLU/PReLU), then
* every other tensor that is still read later (a skip path, a branch waiting for a Concat, the
  activation's own input when it is read again), in the order given: linear neurons (identity,
  no pattern bit), whose pre-activations are those tensors' maps,

and each of those tensors is, on the new state, the selection of its rows (returned as row
offsets).  :meth:`Builder.finish` makes the pending map the output layer and drops the linear
neurons that no later layer reads (an all-zero column of the next ``W``), from the last hidden
layer back to the first; gated neurons are never dropped.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..model.network import Network


class Builder:
    """Accumulates hidden layers ``(W, b, slopes, linear)``; ``width`` is the current state's size
    (None before the first layer is known: the input's size is the loader's)."""

    def __init__(self, path):
        self.path = path
        self.layers = []  # completed (W, b, slopes, linear), each followed by its activations
        self.n_in = None

    @property
    def stage(self) -> int:
        """The number of hidden layers built so far (a tensor's maps are over this state)."""
        return len(self.layers)

    @property
    def width(self):
        return int(self.layers[-1][0].shape[0]) if self.layers else self.n_in

    def activate(self, A, c, slopes, live=()):
        """Close a hidden layer: gated neurons ``(A, c)`` with ``slopes`` (a number or one per row),
        then one linear neuron per row of each live map ``(A_t, c_t)``.

        Returns the row offset of the activated tensor (0) and of each live map in the new layer:
        on the new state, a tensor of k entries at offset o is ``A' = I[o:o+k], c' = 0``."""
        A = np.asarray(A, np.float64)
        c = np.asarray(c, np.float64).reshape(-1)
        m = int(A.shape[0])
        if m == 0:
            raise InputError(f"{self.path}: an activation of an empty tensor: nothing to enumerate")
        s = np.broadcast_to(np.asarray(slopes, np.float64), (m,)).astype(np.float64)
        if not np.all(np.isfinite(s)):
            raise InputError(f"{self.path}: an activation has a NaN or infinite slope")
        rows, bias, offs, off = [A], [c], [0], m
        for At, ct in live:
            At = np.asarray(At, np.float64)
            rows.append(At)
            bias.append(np.asarray(ct, np.float64).reshape(-1))
            offs.append(off)
            off += int(At.shape[0])
        lin = np.zeros(off, bool)
        lin[m:] = True
        self.layers.append((np.vstack(rows), np.concatenate(bias), np.concatenate([s, np.zeros(off - m)]), lin))
        return offs

    def selection(self, off, k):
        """The map (A, c) of the k entries of the current state at row offset ``off``."""
        A = np.zeros((k, self.width))
        A[np.arange(k), off + np.arange(k)] = 1.0
        return A, np.zeros(k)

    def finish(self, A, c, meta):
        """The pending map (A, c) becomes the output layer; dead linear neurons are dropped."""
        if not self.layers:
            raise InputError(f"{self.path}: the model has no activation (ReLU, LeakyReLU, PReLU): it is affine, "
                             "with no activation regions to enumerate")
        Ws = [np.asarray(W, np.float64) for W, _, _, _ in self.layers] + [np.asarray(A, np.float64)]
        bs = [np.asarray(b, np.float64) for _, b, _, _ in self.layers] + [np.asarray(c, np.float64).reshape(-1)]
        slopes = [s for _, _, s, _ in self.layers]
        linear = [li for _, _, _, li in self.layers]
        drop_dead_linear(Ws, bs, slopes, linear)
        any_slope = any(np.any(s != 0) for s in slopes)
        any_linear = any(np.any(li) for li in linear)
        return Network(Ws, bs, source=self.path, meta=meta, slopes=slopes if any_slope else None,
                       linear=linear if any_linear else None)


def drop_dead_linear(Ws, bs, slopes, linear):
    """In place: remove the linear neurons of each hidden layer whose output no later layer reads
    (an all-zero column of the next W), from the last hidden layer back to the first (removing a
    neuron removes its row, which can leave a column of the layer before unread)."""
    for l in range(len(linear) - 1, -1, -1):
        read = np.any(Ws[l + 1] != 0, axis=0)
        keep = ~(linear[l] & ~read)
        if keep.all():
            continue
        Ws[l], bs[l], slopes[l], linear[l] = Ws[l][keep], bs[l][keep], slopes[l][keep], linear[l][keep]
        Ws[l + 1] = np.ascontiguousarray(Ws[l + 1][:, keep])
