"""Activation patterns of PyTorch models with max pools, read from the framework alone (no
``mpi_enum`` code): forward hooks on the named modules, in the order given (the Network's
layer order).

* an activation module (ReLU, LeakyReLU, PReLU): its input > 0, flattened in C order;
* a max-pool module (``MaxPool{1,2,3}d``, ``AdaptiveMaxPool{1,2,3}d``): for each pooled entry
  (C order) whose window has more than one entry, the one-hot of torch's own selector (the
  module run with ``return_indices=True`` on the hook's input) over the window's entries.  The
  windows themselves are probed from the module: the input that is -1 everywhere but +1 at
  entry j pools to +1 exactly at the outputs whose window holds j.  A window's entries in scan
  order (row-major over the kernel offsets) are in increasing flat index, so the member's
  position is its rank in the sorted window.
"""
from __future__ import annotations

import copy

import numpy as np
import torch


def probe_windows(pool, in_shape):
    """For each output entry of ``pool`` (a callable of a batch (n, *in_shape)), the sorted flat
    indices of the input entries of its window."""
    n = int(np.prod(in_shape))
    X = 2.0 * torch.eye(n, dtype=torch.float64) - 1.0
    with torch.no_grad():
        Y = pool(X.reshape((n,) + tuple(in_shape)))
    Y = (Y[0] if isinstance(Y, tuple) else Y).reshape(n, -1).numpy()
    return [np.flatnonzero(Y[:, o] == 1.0) for o in range(Y.shape[1])]


def selector_bits(wins, flat_idx):
    """(N, bits): one-hot of the selected entry ``flat_idx`` (N, n_out; flat input indices) over
    each window of more than one entry."""
    out = []
    for o, w in enumerate(wins):
        if len(w) > 1:
            b = flat_idx[:, o, None] == w[None, :]
            assert np.all(b.sum(axis=1) == 1), "torch's selector is not in the probed window"
            out.append(b)
    return np.concatenate(out, axis=1) if out else np.zeros((len(flat_idx), 0), bool)


def is_pool(m):
    return "MaxPool" in type(m).__name__


def pool_bits(m, inp):
    """The selector bits of the max-pool module ``m`` on its input batch ``inp`` (N, C, ...)."""
    mi = copy.copy(m)
    mi.return_indices = True
    with torch.no_grad():
        _, idx = mi(inp)
    n_sp = int(type(m).__name__[-2])
    C = int(np.prod(inp.shape[1:-n_sp]))
    plane = int(np.prod(inp.shape[-n_sp:]))
    full = idx.reshape(len(inp), C, -1).numpy() + plane * np.arange(C)[None, :, None]
    return selector_bits(probe_windows(m, tuple(inp.shape[1:])), full.reshape(len(inp), -1))


def hook_patterns(model, names, X, shape):
    """(outputs, patterns) of ``model`` (float64) on the flat inputs X (n, prod(shape))."""
    got = {}
    mods = dict(model.named_modules())
    hooks = [mods[n].register_forward_hook(lambda m, inp, out, n=n: got.__setitem__(n, inp[0].detach()))
             for n in names]
    try:
        with torch.no_grad():
            out = model(torch.as_tensor(X, dtype=torch.float64).reshape((-1,) + tuple(shape)))
    finally:
        for h in hooks:
            h.remove()
    bits = [pool_bits(mods[n], got[n]) if is_pool(mods[n]) else (got[n].reshape(len(X), -1) > 0).numpy()
            for n in names]
    return out.reshape(len(X), -1).numpy(), np.concatenate(bits, axis=1)
