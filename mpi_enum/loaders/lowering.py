"""Activations and liveness, shared by the ONNX and PyTorch loaders: which tensors are still read
after an activation, what slopes an activation has, and the call that closes a hidden layer
(max pools: :mod:`.pooling`).

Owns the rules, not the tensors (the loaders keep those: :mod:`.onnx` as ``A @ s + c``,
:mod:`.torch_trace` as values on a basis batch):

* :func:`close_layer`: an activation becomes a hidden layer of :class:`._builder.Builder` (gated
  neurons: the activated tensor's entries in C order; then one block of linear neurons per
  distinct live tensor, in the order given); returns every tensor's map on the new state;
* ONNX: :func:`onnx_last_uses` (each tensor's last consuming node, up front),
  :func:`onnx_slopes` (``Relu``, ``LeakyRelu``, ``PRelu``; ``Clip`` min 0 / no max is a ReLU,
  :func:`check_clip`) and :func:`onnx_constant` (a ``Constant`` node's value);
* PyTorch: :func:`fx_live` (``node.users`` after the node, in graph order) and
  :func:`probe_slopes` (an activation's slope per entry, read off its value at -1).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError


def close_layer(builder, A, c, slopes, live):
    """Build the hidden layer of the activation ``(A, c)`` with ``slopes``; ``live`` lists
    ``(name, key, A_t, c_t)`` for every tensor read later (equal keys: one map, carried once).

    Returns ``((A', c') of the activated tensor, {name: (A', c')})`` on the new state."""
    maps, names = distinct_maps(live)
    offs = builder.activate(A, c, slopes, maps)
    return builder.selection(0, np.shape(A)[0]), moved_maps(builder, offs, maps, names)


def distinct_maps(live):
    """``live`` (name, key, A_t, c_t) -> (the distinct maps, {name: index of its map})."""
    maps, slot, names = [], {}, {}
    for name, key, At, ct in live:
        if key not in slot:
            slot[key] = len(maps)
            maps.append((At, ct))
        names[name] = slot[key]
    return maps, names


def moved_maps(builder, offs, maps, names):
    """{name: (A', c')}: each carried tensor on the new state (its map at offset ``offs[1 + k]``)."""
    moved = [builder.selection(o, np.shape(At)[0]) for o, (At, _) in zip(offs[1:], maps)]
    return {n: moved[k] for n, k in names.items()}


# ----------------------------------------------------------------------------------------- ONNX

def onnx_attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def onnx_constant(node, path):
    """The value of a ``Constant`` node."""
    from onnx import numpy_helper

    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name == "value_float":
            return np.array(a.f, np.float32)
        if a.name == "value_floats":
            return np.array(list(a.floats), np.float32)
        if a.name == "value_int":
            return np.array(a.i, np.int64)
        if a.name == "value_ints":
            return np.array(list(a.ints), np.int64)
    raise InputError(f"{path}: Constant node {node.name!r} has no supported value attribute")


def onnx_last_uses(g):
    """Tensor name -> index of the last node reading it (the graph output: after every node).
    A ``Shape`` node reads only the shape, which is kept: it does not make a tensor live."""
    last = {}
    for idx, node in enumerate(g.node):
        if node.op_type == "Shape":
            continue
        for i in node.input:
            if i:
                last[i] = idx
    for o in g.output:
        last[o.name] = len(g.node)
    return last


def float_attr(x):
    """A float32 attribute as the shortest decimal that rounds to it (0.01f -> 0.01)."""
    return float(np.format_float_positional(np.float32(x), unique=True, trim="-"))


def onnx_slopes(node, op, ins, shape, consts, path, name):
    """The slope below 0 of each entry (C order) of a ``Relu``/``LeakyRelu``/``PRelu`` node's data."""
    m = int(np.prod(shape))
    if op == "Relu":
        return np.zeros(m)
    if op == "LeakyRelu":
        return np.full(m, float_attr(onnx_attr(node, "alpha", 0.01)))
    if len(ins) < 2 or ins[1] not in consts:
        raise InputError(f"{path}: node {name!r} (PRelu): its slope must be a constant (initializer)")
    sl = np.asarray(consts[ins[1]], np.float64)
    try:
        return np.broadcast_to(sl, tuple(shape)).reshape(-1).copy()
    except ValueError:
        raise InputError(f"{path}: node {name!r} (PRelu): the slope of shape {sl.shape} does not broadcast to "
                         f"the data's shape {tuple(shape)}") from None


def check_clip(node, ins, consts, opset, path, name):
    """A Clip with min = 0 and no max (or max = +inf) is ReLU; any other Clip is refused."""
    if opset >= 11:
        bounds = []
        for x in (list(ins) + ["", ""])[1:3]:
            if x and x not in consts:
                raise InputError(f"{path}: node {name!r} (Clip): its bounds must be constants")
            bounds.append(np.asarray(consts[x], np.float64) if x else None)
        lo, hi = bounds
    else:
        lo, hi = onnx_attr(node, "min", None), onnx_attr(node, "max", None)
        lo = None if lo is None or lo <= -3.4e38 else np.asarray(lo, np.float64)
        hi = None if hi is None or hi >= 3.4e38 else np.asarray(hi, np.float64)
    if hi is not None and np.all(np.isinf(hi)) and np.all(hi > 0):
        hi = None
    if hi is not None:
        raise InputError(f"{path}: node {name!r} (Clip) with max = {float(np.max(hi)):g} is not a ReLU: it has a "
                         "second kink at the max (a ReLU6-like clamp), which the enumeration engine does not "
                         "handle yet")
    if lo is None or not np.all(lo == 0):
        raise InputError(f"{path}: node {name!r} (Clip) with min = {'-inf' if lo is None else f'{float(np.max(lo)):g}'}"
                         " is not a ReLU: only Clip(min = 0, no max) is read (as ReLU)")


# -------------------------------------------------------------------------------------- PyTorch

def fx_live(node, order, env, is_data):
    """The fx nodes whose value (``is_data`` of it) is read by a node after ``node`` (graph order
    ``order``: node -> index); shape reads count (the carried copy has the new batch size)."""
    here = order[node]
    return [u for u, val in env.items()
            if is_data(val) and any(order.get(w, -1) > here for w in u.users)]


def probe_slopes(f, shape, path, what):
    """The slope below 0 of each entry of the activation ``f`` (a callable of one float64 tensor
    of shape ``(1, *shape)``), read as ``-f(-1)``; ``f(1)`` must be 1 (a ReLU, LeakyReLU or PReLU)."""
    import torch

    ones = torch.ones((1,) + tuple(shape), dtype=torch.float64)
    try:
        neg = f(-ones).detach().reshape(-1).numpy().astype(np.float64)
        pos = f(ones.clone()).detach().reshape(-1).numpy()
    except Exception as exc:
        raise InputError(f"{path}: {what}: cannot apply the activation to the data of shape {tuple(shape)} "
                         f"({type(exc).__name__})") from None
    if neg.shape != pos.shape or pos.size != int(np.prod(shape)) or not np.all(pos == 1.0) \
            or not np.all(np.isfinite(neg)):
        raise InputError(f"{path}: {what}: the activation is not a ReLU, LeakyReLU or PReLU (f(1) != 1)")
    return -neg
