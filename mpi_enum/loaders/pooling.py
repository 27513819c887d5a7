"""Max pooling, shared by the ONNX and PyTorch loaders: the windows of a max pool and the call
that makes them a *max layer* of :class:`._builder.Builder`.

Owns the window arithmetic, not the tensors (the loaders keep those):

* :func:`windows` (``kernel``, ``stride``, ``pads`` at both ends, ``dilation``, ``ceil_mode``:
  ONNX's ``MaxPool`` and torch's ``max_pool{1,2,3}d``) and :func:`adaptive_windows` (torch's
  ``adaptive_max_pool``: start ``floor(i L / out)``, end ``ceil((i + 1) L / out)``): for every
  output entry, in C order of the output tensor, the flat (C order) indices of its window's
  input entries, in window scan order (row-major over the kernel offsets).  Padding is -inf in
  both frameworks, so a padded position is simply left out of its window; a window that lies
  entirely in the padding (an output of -inf) is refused.  With ``ceil_mode`` a last window
  that would start in the end padding is dropped, as torch and onnxruntime's kernel do (ONNX
  states it from opset 22; onnxruntime's shape inference still counts it);
* :func:`close_max_layer`: a max pool becomes a hidden layer of max groups (one group per
  output entry, its members the window's entries; a window of one entry is a linear neuron),
  every tensor read later carried as linear neurons; a pool whose windows all have one entry
  is a selection (affine), and builds no layer (:func:`is_selection`);
* :func:`onnx_windows` (``MaxPool``: ``auto_pad`` NOTSET/VALID/SAME_UPPER/SAME_LOWER,
  ``storage_order`` ignored; ``GlobalMaxPool``) and :func:`torch_windows` (a module, an ``F.``
  function or an ATen operator, its arguments read as torch does, and the windows checked
  against torch's own result on a random sample).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from .lowering import distinct_maps, moved_maps, onnx_attr


def _axis(L, k, s, pb, pe, d, ceil_mode):
    """The input coordinates (valid ones only) of each output position along one axis."""
    span = d * (k - 1) + 1
    num = L + pb + pe - span
    if num < 0:
        return None
    n = (-(-num // s) if ceil_mode else num // s) + 1
    while ceil_mode and n > 1 and (n - 1) * s >= L + pb:  # a window may not start in the end padding
        n -= 1
    out = []
    for o in range(n):
        pos = o * s - pb + d * np.arange(k)
        out.append(pos[(pos >= 0) & (pos < L)])
    return out


def _combine(shape, per_axis, path, what):
    """(output shape, members, sizes) from each spatial axis's coordinate lists (the last axes
    of ``shape``; the leading ones, batch and channels, are kept)."""
    n_sp = len(per_axis)
    lead, spatial = tuple(shape[:len(shape) - n_sp]), tuple(shape[len(shape) - n_sp:])
    outs = tuple(len(a) for a in per_axis)
    offs, sizes = [], []
    for idx in np.ndindex(*outs):
        coords = [per_axis[a][i] for a, i in enumerate(idx)]
        if any(len(cc) == 0 for cc in coords):
            raise InputError(f"{path}: {what}: a pooling window lies entirely in the padding (its output would be "
                             "-inf): not supported")
        grid = np.meshgrid(*coords, indexing="ij")
        offs.append(np.ravel_multi_index(tuple(g.reshape(-1) for g in grid), spatial))
        sizes.append(offs[-1].size)
    plane, n_lead = int(np.prod(spatial)), int(np.prod(lead))
    offs = np.concatenate(offs).astype(np.int64) if offs else np.zeros(0, np.int64)
    members = (np.arange(n_lead, dtype=np.int64)[:, None] * plane + offs[None, :]).reshape(-1)
    return lead + outs, members, np.tile(np.asarray(sizes, np.int64), n_lead)


def windows(shape, kernel, stride, pads_begin, pads_end, dilation, ceil_mode, path, what):
    """The windows of a max pool over the last ``len(kernel)`` axes of ``shape``:
    ``(output shape, members, sizes)``, ``members`` the concatenated windows (input entries, flat
    C order), ``sizes`` the length of each output entry's window."""
    n_sp = len(kernel)
    if len(shape) < n_sp + 1:
        raise InputError(f"{path}: {what}: a {n_sp}-D max pool needs an input of shape (C, ...) with {n_sp} spatial "
                         f"axes, got {tuple(shape)}")
    params = [kernel, stride, pads_begin, pads_end, dilation]
    if any(len(p) != n_sp for p in params) or min(kernel) < 1 or min(stride) < 1 or min(dilation) < 1 \
            or min(pads_begin) < 0 or min(pads_end) < 0:
        raise InputError(f"{path}: {what}: invalid max pool parameters (kernel {tuple(kernel)}, strides "
                         f"{tuple(stride)}, pads {tuple(pads_begin)}/{tuple(pads_end)}, dilations {tuple(dilation)})")
    per_axis = []
    for a in range(n_sp):
        L = int(shape[len(shape) - n_sp + a])
        ax = _axis(L, int(kernel[a]), int(stride[a]), int(pads_begin[a]), int(pads_end[a]), int(dilation[a]),
                   bool(ceil_mode))
        if ax is None:
            raise InputError(f"{path}: {what}: the max pool's window ({kernel[a]}, dilation {dilation[a]}) is larger "
                             f"than the padded input ({L} + {pads_begin[a] + pads_end[a]})")
        per_axis.append(ax)
    return _combine(shape, per_axis, path, what)


def adaptive_windows(shape, out_size, path, what):
    """The windows of torch's adaptive max pool to ``out_size`` (None: the input's size)."""
    n_sp = len(out_size)
    if len(shape) < n_sp + 1:
        raise InputError(f"{path}: {what}: an adaptive max pool needs an input with {n_sp} spatial axes, "
                         f"got {tuple(shape)}")
    per_axis = []
    for a, n in enumerate(out_size):
        L = int(shape[len(shape) - n_sp + a])
        n = L if n is None else int(n)
        if n < 1:
            raise InputError(f"{path}: {what}: an adaptive max pool to size {n}")
        per_axis.append([np.arange((i * L) // n, -(-((i + 1) * L) // n)) for i in range(n)])
    return _combine(shape, per_axis, path, what)


def is_selection(win):
    """True when every window has one entry: the pool only picks entries (affine, no layer)."""
    return not win[2].size or int(win[2].max()) == 1


def close_max_layer(builder, A, c, win, live):
    """The max layer of the pool ``win`` of the tensor ``(A, c)``; ``live`` as for
    :func:`.lowering.close_layer`.  Returns ``((A', c') of the pooled tensor, {name: (A', c')})``."""
    maps, names = distinct_maps(live)
    _, members, sizes = win
    offs = builder.maxpool(A, c, members, sizes, maps)
    S = np.zeros((len(sizes), builder.width))
    S[np.repeat(np.arange(len(sizes)), sizes), np.arange(len(members))] = 1.0
    return (S, np.zeros(len(sizes))), moved_maps(builder, offs, maps, names)


# ----------------------------------------------------------------------------------------- ONNX

def onnx_windows(node, op, shape, indices_read, path, name):
    """The windows of a ``MaxPool`` / ``GlobalMaxPool`` node on data of ``shape`` (1, C, ...)."""
    what = f"node {name!r} ({op})"
    if indices_read:
        raise InputError(f"{path}: {what}: its second output (the Indices) is read: only the pooled values of a "
                         "max pool are supported")
    if len(shape) < 3:
        raise InputError(f"{path}: {what}: needs an input of shape (N, C, ...), got {tuple(shape)}")
    spatial = [int(s) for s in shape[2:]]
    n = len(spatial)
    if op == "GlobalMaxPool":
        return windows(shape, spatial, [1] * n, [0] * n, [0] * n, [1] * n, False, path, what)
    kernel = [int(k) for k in (onnx_attr(node, "kernel_shape") or [])]
    if len(kernel) != n:
        raise InputError(f"{path}: {what}: kernel_shape {kernel} does not match the {n} spatial axes of {tuple(shape)}")
    strides = [int(s) for s in (onnx_attr(node, "strides") or [1] * n)]
    dil = [int(s) for s in (onnx_attr(node, "dilations") or [1] * n)]
    pads = [int(p) for p in (onnx_attr(node, "pads") or [0] * (2 * n))]
    ceil_mode = bool(onnx_attr(node, "ceil_mode", 0))
    auto = onnx_attr(node, "auto_pad", "NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if len(pads) != 2 * n or len(strides) != n or len(dil) != n:
        raise InputError(f"{path}: {what}: strides {strides}, dilations {dil} or pads {pads} do not match the {n} "
                         "spatial axes")
    if auto == "VALID":
        pads = [0] * (2 * n)
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        pads, ceil_mode = [0] * (2 * n), False
        for a, L in enumerate(spatial):
            total = max(0, (math.ceil(L / strides[a]) - 1) * strides[a] + dil[a] * (kernel[a] - 1) + 1 - L)
            pads[a] = total // 2 if auto == "SAME_UPPER" else total - total // 2
            pads[n + a] = total - pads[a]
    elif auto != "NOTSET":
        raise InputError(f"{path}: {what}: auto_pad {auto!r} is not supported (NOTSET, VALID, SAME_UPPER, SAME_LOWER)")
    return windows(shape, kernel, strides, pads[:n], pads[n:], dil, ceil_mode, path, what)


# -------------------------------------------------------------------------------------- PyTorch

def _tuple(x, n):
    if isinstance(x, (list, tuple)):
        return tuple(x) * n if len(x) == 1 else tuple(x)
    return (x,) * n


_KINDS = {}


def torch_kind(tgt):
    """``(spatial axes, adaptive, returns indices)`` of a max-pool function or ATen operator,
    else None."""
    if not _KINDS:
        _KINDS.update(_kinds())
    try:
        return _KINDS.get(tgt)
    except TypeError:  # an unhashable target
        return None


def _kinds():
    import torch
    import torch.nn.functional as F

    table = {}
    for n in (1, 2, 3):
        for mod, names in ((F, ("max_pool", "adaptive_max_pool")), (torch, ("max_pool",))):
            for base in names:
                table[getattr(mod, f"{base}{n}d", None)] = (n, base.startswith("adaptive"), False)
                table[getattr(mod, f"{base}{n}d_with_indices", None)] = (n, base.startswith("adaptive"), True)
        for base, adaptive in (("max_pool", False), ("adaptive_max_pool", True)):
            for op, idx in ((f"{base}{n}d", adaptive), (f"{base}{n}d_with_indices", True)):
                packet = getattr(torch.ops.aten, op, None)
                if packet is not None and hasattr(packet, "default"):
                    table[packet.default] = (n, adaptive, idx)  # aten.adaptive_max_pool2d returns (out, indices)
    table.pop(None, None)
    return table


_ARGS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")


def torch_windows(f, n, adaptive, params, sample_shape, path, what):
    """The windows of a torch max pool with ``params`` (``kernel_size`` ... or ``output_size``)
    over one sample of ``sample_shape``, checked against ``f`` (the pool as torch computes it,
    a callable of one tensor) on a random sample: a mismatch is refused, never enumerated."""
    import torch

    if adaptive:
        win = adaptive_windows(sample_shape, _tuple(params["output_size"], n), path, what)
    else:
        if params.get("return_indices"):
            raise InputError(f"{path}: {what}: a max pool with return_indices=True: its indices are not supported "
                             "(only the pooled values)")
        k = _tuple(params["kernel_size"], n)
        s = params.get("stride")
        s = k if s is None or (isinstance(s, (list, tuple)) and len(s) == 0) else _tuple(s, n)
        p = _tuple(params.get("padding", 0), n)
        win = windows(sample_shape, k, s, p, p, _tuple(params.get("dilation", 1), n), bool(params.get("ceil_mode")),
                      path, what)
    probe = torch.from_numpy(np.random.default_rng(0).standard_normal((1,) + tuple(sample_shape)))
    try:
        ref = f(probe)
        ref = (ref[0] if isinstance(ref, (tuple, list)) else ref).detach().reshape(-1).numpy()
    except Exception as exc:
        raise InputError(f"{path}: {what}: cannot apply the max pool to the data of shape {tuple(sample_shape)} "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''})") from None
    flat = probe.reshape(-1).numpy()
    ours = np.maximum.reduceat(flat[win[1]], np.r_[0, np.cumsum(win[2])[:-1]]) if win[2].size else np.zeros(0)
    if ref.shape != ours.shape or not np.array_equal(ref, ours):
        raise InputError(f"{path}: {what}: the max pool's windows as read do not reproduce torch's result: not "
                         "supported")
    return win


def torch_module_windows(m, t, sample_shape, path, what):
    """The windows of a ``MaxPool{1,2,3}d`` / ``AdaptiveMaxPool{1,2,3}d`` module (type name ``t``)."""
    n = int(t[-2])
    if t.startswith("Adaptive"):
        if getattr(m, "return_indices", False):
            raise InputError(f"{path}: {what}: {t} with return_indices=True: its indices are not supported (only the "
                             "pooled values)")
        return torch_windows(m, n, True, {"output_size": m.output_size}, sample_shape, path, what)
    params = {a: getattr(m, a) for a in _ARGS}
    return torch_windows(m, n, False, params, sample_shape, path, f"{what} ({t})")


def torch_call_windows(tgt, args, kwargs, sample_shape, path, what):
    """``(windows, pair)`` of a call ``tgt(x, *args, **kwargs)`` of a max-pool function
    (:func:`torch_kind`); ``pair``: the call returns (values, indices), whose indices the caller
    refuses where they are read."""
    n, adaptive, pair = torch_kind(tgt)
    names = ("output_size", "return_indices") if adaptive else _ARGS
    params = dict(zip(names, args))
    params.update({k: v for k, v in kwargs.items() if k in names})
    pair = bool(params.pop("return_indices", False)) or pair
    return torch_windows(lambda z: tgt(z, *args, **kwargs), n, adaptive, params, sample_shape, path, what), pair
