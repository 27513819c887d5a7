"""A ``torch.nn.Module`` (pickled, TorchScript or in memory) read as dense ReLU layers.

Owns the reading of a model's forward pass; :mod:`.pytorch` owns the files.  The forward pass is
traced with ``torch.fx`` where it can be (any module whose ``forward`` chains layers, functional
ReLUs, ``view``/``flatten``, ...); a TorchScript model, or one that ``fx`` cannot trace, is read as
the chain of its submodules in order, and that reading is then checked against the model's own
forward pass on random inputs (a mismatch is refused, never enumerated).

Folding: every affine step (``Linear``, ``Conv1d``/``Conv2d`` with any stride, padding, dilation
and groups, ``AvgPool``, ``AdaptiveAvgPool``, ``BatchNorm`` in eval mode, ``Flatten``,
``Dropout``, ``Identity``, reshapes, adding or scaling by constants) is applied to the batch
``[0, e_1, ..., e_m]`` of basis tensors in float64, so that row 0 holds the constant part and row
``1 + j`` minus row 0 the j-th column of the composed affine map since the last ReLU: exact for
affine maps, whatever the module.  A ReLU ends a layer.  A trailing ``Softmax``/``LogSoftmax``
(or ``argmax``) is dropped: it does not change the activation regions.  Anything else (MaxPool,
LeakyReLU, PReLU, residual adds) is an InputError naming it.
"""
from __future__ import annotations

import copy
import operator

import numpy as np

from ..errors import InputError
from ._builder import Builder

AFFINE_MODULES = {"Linear", "Conv1d", "Conv2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
                  "BatchNorm1d", "BatchNorm2d", "Flatten", "Unflatten", "Dropout", "Dropout1d", "Dropout2d",
                  "Identity"}
PASS_MODULES = {"Dropout", "Dropout1d", "Dropout2d", "Identity"}  # a ReLU output stays one
DROP_MODULES = {"Softmax", "LogSoftmax"}
KNOWN = AFFINE_MODULES | DROP_MODULES | {"ReLU"}
SUPPORTED = ("Linear, Conv1d, Conv2d, AvgPool1d/2d, AdaptiveAvgPool1d/2d, BatchNorm1d/2d, Flatten, Dropout, "
             "Identity, ReLU and a trailing Softmax/LogSoftmax")
_AFFINE_METHODS = {"view", "reshape", "flatten", "contiguous", "double", "float"}
_META_METHODS = {"size", "dim"}
_DROP_METHODS = {"softmax", "log_softmax", "argmax"}


def _affine_functions():
    import torch
    import torch.nn.functional as F

    return {torch.flatten, torch.reshape, F.linear, F.conv1d, F.conv2d, F.avg_pool1d, F.avg_pool2d,
            F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, operator.neg, operator.pos}


def _relu_functions():
    import torch
    import torch.nn.functional as F

    return {torch.relu, F.relu, torch.relu_}


def _drop_functions():
    import torch
    import torch.nn.functional as F

    return {torch.softmax, F.softmax, torch.log_softmax, F.log_softmax, torch.argmax}


def tname(m):
    """A module's class name (TorchScript keeps it as ``original_name``)."""
    return getattr(m, "original_name", None) or type(m).__name__


def not_supported(path, what, where=""):
    at = f" ({where})" if where else ""
    return InputError(f"{path}: unsupported PyTorch {what}{at}: not supported yet (the enumeration engine handles "
                      f"only ReLU between affine layers: {SUPPORTED})")


class _Stack:
    """A data tensor as its values on the basis batch: ``t`` (m + 1, *shape), float64."""

    __slots__ = ("t", "stage", "fresh", "dropped")

    def __init__(self, t, stage, fresh=False, dropped=None):
        self.t, self.stage, self.fresh, self.dropped = t, stage, fresh, dropped


class _Fold:
    """The layers read so far and the rules every step on the data obeys."""

    def __init__(self, path):
        self.path = path
        self.builder = Builder(path)
        self.stage = 0

    def start(self, shape):
        import torch

        m = int(np.prod(shape))
        B = torch.zeros(m + 1, m, dtype=torch.float64)
        B[1:] = torch.eye(m, dtype=torch.float64)
        return B.reshape((m + 1,) + tuple(shape))

    def check(self, stacks, what):
        if len(stacks) > 1:
            raise InputError(f"{self.path}: {what} combines two data tensors (a residual add or a concatenation): "
                             "not supported yet (the enumeration engine handles only chains of affine layers and "
                             "ReLUs)")
        st = stacks[0]
        if st.dropped:
            raise InputError(f"{self.path}: {what} comes after a {st.dropped}: a {st.dropped} is accepted only as the "
                             "last operation (where it does not change the activation regions)")
        if st.stage != self.stage:
            raise InputError(f"{self.path}: {what} reads a tensor from before a later ReLU (a skip connection): "
                             "not supported yet (only chains of affine layers and ReLUs)")
        return st

    def affine(self, st):
        F = st.t.reshape(st.t.shape[0], -1).detach().numpy()
        c = F[0].copy()
        return np.ascontiguousarray((F[1:] - c).T), c

    def relu(self, st):
        if st.fresh:
            return st  # relu(relu(x)) = relu(x)
        self.builder.layers.append(self.affine(st))
        self.stage += 1
        return _Stack(self.start(st.t.shape[1:]), self.stage, fresh=True)

    def drop(self, st, what):
        return _Stack(st.t, st.stage, st.fresh, dropped=what)

    def finish(self, st):
        A, c = self.affine(st)
        if not self.builder.layers:
            raise InputError(f"{self.path}: the model has no ReLU: it is affine, with no activation regions to "
                             "enumerate (expected a torch.nn.Sequential, or a module whose forward chains affine "
                             "layers and ReLUs)")
        meta = {"format": "torch"}
        if st.fresh:
            meta["output_relu"] = True
        if st.dropped:
            meta["notes"] = [f"dropped trailing {st.dropped}: it does not change the activation regions"]
        return self.builder.finish(A, c, meta)


def _module_step(fold, m, st, where):
    """One submodule applied to the stack (the walk and the fx trace share it)."""
    t = tname(m)
    if t == "ReLU":
        return fold.relu(fold.check([st], where))
    if t in DROP_MODULES:
        return fold.drop(fold.check([st], where), t)
    if t not in AFFINE_MODULES:
        raise not_supported(fold.path, f"module {t!r}", where)
    st = fold.check([st], where)
    try:
        out = m(st.t)
    except Exception as exc:
        raise InputError(f"{fold.path}: {where}: {t} cannot take the data of shape {tuple(st.t.shape[1:])} "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''})") from None
    return _Stack(out, st.stage, fresh=st.fresh and t in PASS_MODULES)


def _named_leaves(m, prefix=""):
    kids = list(m.named_children())
    if not kids or tname(m) in KNOWN:
        yield prefix or tname(m), m
        return
    for name, ch in kids:
        yield from _named_leaves(ch, f"{prefix}.{name}" if prefix else name)


def _leaves(m):
    return (leaf for _, leaf in _named_leaves(m))


def _walk(model, fold, shape):
    st = _Stack(fold.start(shape), 0)
    for i, m in enumerate(_leaves(model)):
        st = _module_step(fold, m, st, f"layer {i}")
    return st


def _is_const(a):
    return not isinstance(a, _Stack)


def _fx_node(fold, gm, node, args, kwargs, stacks):
    import torch

    what = f"node {node.name!r}"
    if node.op == "call_module":
        fold.check(stacks, f"layer {node.target!r}")
        return _module_step(fold, gm.get_submodule(node.target), stacks[0], f"layer {node.target!r}")
    tgt = node.target
    label = tgt if isinstance(tgt, str) else getattr(tgt, "__name__", str(tgt))
    unwrap = [a.t if isinstance(a, _Stack) else a for a in args]
    kw = {k: (v.t if isinstance(v, _Stack) else v) for k, v in kwargs.items()}
    if node.op == "call_method" and tgt in _META_METHODS or (tgt is getattr and args[1:] == ("shape",)):
        return getattr(unwrap[0], tgt)(*unwrap[1:], **kw) if node.op == "call_method" else unwrap[0].shape
    st = fold.check(stacks, what)
    if (node.op == "call_method" and tgt in ("relu", "relu_")) or tgt in _relu_functions():
        return fold.relu(st)
    if (node.op == "call_method" and tgt in _DROP_METHODS) or tgt in _drop_functions():
        return fold.drop(st, {"softmax": "Softmax", "log_softmax": "LogSoftmax", "argmax": "ArgMax"}.get(
            label, label))
    linear = (node.op == "call_method" and tgt in _AFFINE_METHODS) or tgt in _affine_functions()
    if tgt is torch.nn.functional.dropout:  # the identity once traced in eval mode
        linear = kw.get("training", unwrap[3] if len(unwrap) > 3 else True) is False
    if tgt in (operator.add, operator.sub, operator.mul, operator.truediv) and len(args) == 2:
        linear = tgt is not operator.truediv or _is_const(args[1])  # x +- c, c - x, c x: affine; c / x is not
    if not linear:
        raise not_supported(fold.path, f"operation {label!r}", what)
    f = getattr(unwrap[0], tgt) if node.op == "call_method" else tgt
    out = f(*unwrap[1:], **kw) if node.op == "call_method" else f(*unwrap, **kw)
    return _Stack(out, st.stage)


def _fx(gm, fold, shape):
    import torch.fx

    env, first = {}, True
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if not first:
                if node.args:
                    env[node] = node.args[0]
                    continue
                raise InputError(f"{fold.path}: the model's forward takes more than one input ({node.name!r})")
            env[node], first = _Stack(fold.start(shape), 0), False
        elif node.op == "get_attr":
            obj = gm
            for part in node.target.split("."):
                obj = getattr(obj, part)
            env[node] = obj
        elif node.op == "output":
            out = env[node.args[0]] if isinstance(node.args[0], torch.fx.Node) else None
            if not isinstance(out, _Stack):
                raise InputError(f"{fold.path}: the model's forward must return one tensor computed from its input")
            return out
        else:
            args = torch.fx.node.map_arg(node.args, lambda n: env[n])
            kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: env[n])
            flat = []
            torch.fx.node.map_aggregate((args, kwargs), lambda a: flat.append(a) if isinstance(a, _Stack) else a)
            if not flat:
                f = getattr(args[0], node.target) if node.op == "call_method" else (
                    gm.get_submodule(node.target) if node.op == "call_module" else node.target)
                env[node] = f(*args[1:], **kwargs) if node.op == "call_method" else f(*args, **kwargs)
            else:
                env[node] = _fx_node(fold, gm, node, args, kwargs, flat)
    raise InputError(f"{fold.path}: the model's forward has no output")


def input_shape(model, path):
    """The shape of one input sample: ``model.input_shape`` if set, else read from the first layer
    (a Linear's ``in_features``; for a convolution, the one square size at which the model runs)."""
    import torch

    given = getattr(model, "input_shape", None)
    if given is not None:
        try:
            return tuple(int(s) for s in given)
        except (TypeError, ValueError):
            raise InputError(f"{path}: model.input_shape must be a tuple of ints (one sample, no batch axis)") from None
    first = next(iter(m for m in _leaves(model) if tname(m) not in PASS_MODULES | {"Flatten"}), None)
    t = tname(first) if first is not None else ""
    if t == "Linear":
        return (int(first.in_features),)
    if t in ("BatchNorm1d",):
        return (int(first.running_mean.shape[0]),)
    if t in ("Conv1d", "Conv2d"):
        C = int(first.weight.shape[1]) * int(getattr(first, "groups", 1))
        fits = []
        for s in range(1, 65):
            shape = (C, s) if t == "Conv1d" else (C, s, s)
            try:
                with torch.no_grad():
                    model(torch.zeros((1,) + shape, dtype=torch.float64))
            except Exception:
                continue
            fits.append(shape)
            if len(fits) > 1:
                break
        if len(fits) == 1:
            return fits[0]
    raise InputError(f"{path}: cannot tell the size of the model's input (first layer {t or '?'}): set "
                     "model.input_shape = (C, H, W) (one sample, no batch axis) before saving, or export it to .onnx")


def network_of(model, path, copy_model=True):
    """The :class:`~mpi_enum.model.network.Network` of a module (a float64 copy of it, in eval mode,
    is what is read: the caller's module is not changed unless ``copy_model`` is False)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's notices while copying and converting
        return _network_of(model, path, copy_model)


def _network_of(model, path, copy_model):
    import torch

    try:
        m = copy.deepcopy(model) if copy_model else model
        m = m.double().eval()
    except Exception as exc:
        raise InputError(f"{path}: cannot make a float64 copy of the model ({type(exc).__name__})") from None
    scripted = isinstance(m, torch.jit.ScriptModule)
    for name, leaf in _named_leaves(m):  # a known unsupported layer is named before anything else
        t = tname(leaf)
        if (scripted or type(leaf).__module__.startswith("torch.nn")) and t not in KNOWN:
            raise not_supported(path, f"module {t!r}", f"layer {name!r}")
    shape = input_shape(m, path)
    gm = None
    if not scripted:
        try:
            import torch.fx

            gm = torch.fx.symbolic_trace(m)
        except Exception:
            gm = None  # data-dependent control flow: read the submodules in order, then check
    fold = _Fold(path)
    with torch.no_grad():
        st = _fx(gm, fold, shape) if gm is not None else _walk(m, fold, shape)
        try:
            net = fold.finish(st)
        except InputError:
            if gm is None and tname(m) != "Sequential":
                raise _mismatch(path) from None
            raise
        if gm is None or not st.dropped:
            _check_forward(m, net, shape, st.dropped, path)
    return net


def _mismatch(path):
    return InputError(f"{path}: the model's forward pass does more than chain its submodules (e.g. a residual add "
                      f"or a functional call in forward): not supported yet for TorchScript or untraceable models; "
                      f"save it with torch.save(model) so that it can be traced, or export it to .onnx")


def _check_forward(m, net, shape, dropped, path):
    """The layers read must reproduce the model's own forward pass (float64, random inputs)."""
    import torch

    X = np.random.default_rng(0).uniform(-1, 1, (16, int(np.prod(shape))))
    try:
        ref = m(torch.from_numpy(X.reshape((16,) + tuple(shape))))
    except Exception as exc:
        raise InputError(f"{path}: the model's forward fails on inputs of shape {tuple(shape)} "
                         f"({type(exc).__name__})") from None
    ours = torch.from_numpy(net.forward(X))
    if dropped:
        last = [x for x in _leaves(m)][-1]
        ours = last(ours)
    ref = ref.reshape(16, -1).double().numpy()
    ours = ours.reshape(16, -1).double().numpy()
    scale = max(1.0, float(np.abs(ref).max())) if ref.size else 1.0
    if ref.shape != ours.shape or not np.allclose(ours, ref, rtol=1e-7, atol=1e-9 * scale):
        raise _mismatch(path)
