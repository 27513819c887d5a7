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
offsets).  :meth:`Builder.maxpool` closes a *max layer* instead: one max group per pooled entry,
its members the entries of the entry's window (each member's pre-activation is that input
entry's row; group id = the pooled entry's index, so each group is one run of neurons), then
the live tensors as above; the pooled value is the sum of its group's outputs (a window of one
entry is a linear neuron).  :meth:`Builder.finish` makes the pending map the output layer and
drops the linear neurons that no later layer reads (an all-zero column of the next ``W``), from
the last hidden layer back to the first; gated neurons are never dropped.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..model.network import Network


class Builder:
    """Accumulates hidden layers ``(W, b, slopes, linear, groups)``; ``width`` is the current state's size
    (None before the first layer is known: the input's size is the loader's)."""

    def __init__(self, path):
        self.path = path
        self.layers = []  # completed (W, b, slopes, linear, groups), each followed by its activations
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
        return self._close(A, c, s, np.zeros(m, bool), np.full(m, -1, np.int64), live)

    def maxpool(self, A, c, members, sizes, live=()):
        """Close a max layer: for each pooled entry o, one neuron per entry of its window (the rows
        ``members`` of ``(A, c)``, ``sizes[o]`` of them, in order), in max group o; a window of one
        entry is a linear neuron.  Then the live maps, as :meth:`activate`; returns their offsets
        (the candidates start at 0: the pooled tensor is the sum over each group's rows)."""
        A = np.asarray(A, np.float64)
        c = np.asarray(c, np.float64).reshape(-1)
        members, sizes = np.asarray(members, np.int64), np.asarray(sizes, np.int64)
        if members.size == 0:
            raise InputError(f"{self.path}: a max pool of an empty tensor: nothing to enumerate")
        group = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
        single = np.repeat(sizes == 1, sizes)
        group[single] = -1
        return self._close(A[members], c[members], np.zeros(members.size), single, group, live)

    def _close(self, A, c, s, lin, group, live):
        rows, bias, offs, off, m = [A], [c], [0], int(A.shape[0]), int(A.shape[0])
        for At, ct in live:
            At = np.asarray(At, np.float64)
            rows.append(At)
            bias.append(np.asarray(ct, np.float64).reshape(-1))
            offs.append(off)
            off += int(At.shape[0])
        lin = np.concatenate([lin, np.ones(off - m, bool)])
        group = np.concatenate([group, np.full(off - m, -1, np.int64)])
        self.layers.append((np.vstack(rows), np.concatenate(bias), np.concatenate([s, np.zeros(off - m)]), lin, group))
        return offs

    def selection(self, off, k):
        """The map (A, c) of the k entries of the current state at row offset ``off``."""
        A = np.zeros((k, self.width))
        A[np.arange(k), off + np.arange(k)] = 1.0
        return A, np.zeros(k)

    def finish(self, A, c, meta):
        """The pending map (A, c) becomes the output layer; dead linear neurons are dropped."""
        if not self.layers:
            raise InputError(f"{self.path}: the model has no activation (ReLU, LeakyReLU, PReLU, MaxPool): it is "
                             "affine, with no activation regions to enumerate")
        Ws = [np.asarray(W, np.float64) for W, *_ in self.layers] + [np.asarray(A, np.float64)]
        bs = [np.asarray(b, np.float64) for _, b, *_ in self.layers] + [np.asarray(c, np.float64).reshape(-1)]
        slopes, linear, groups = ([layer[k] for layer in self.layers] for k in (2, 3, 4))
        drop_dead_linear(Ws, bs, slopes, linear, groups)
        any_slope = any(np.any(s != 0) for s in slopes)
        any_linear = any(np.any(li) for li in linear)
        any_group = any(np.any(g >= 0) for g in groups)
        return Network(Ws, bs, source=self.path, meta=meta, slopes=slopes if any_slope else None,
                       linear=linear if any_linear else None, groups=groups if any_group else None)


def drop_dead_linear(Ws, bs, slopes, linear, groups=None):
    """In place: remove the linear neurons of each hidden layer whose output no later layer reads
    (an all-zero column of the next W), from the last hidden layer back to the first (removing a
    neuron removes its row, which can leave a column of the layer before unread).  ``groups``
    (max-group ids per layer, or None) are kept aligned; a group's members are never linear."""
    for l in range(len(linear) - 1, -1, -1):
        read = np.any(Ws[l + 1] != 0, axis=0)
        keep = ~(linear[l] & ~read)
        if keep.all():
            continue
        Ws[l], bs[l], slopes[l], linear[l] = Ws[l][keep], bs[l][keep], slopes[l][keep], linear[l][keep]
        if groups is not None:
            groups[l] = groups[l][keep]
        Ws[l + 1] = np.ascontiguousarray(Ws[l + 1][:, keep])
