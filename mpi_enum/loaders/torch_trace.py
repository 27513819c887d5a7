"""A ``torch.nn.Module`` (pickled, TorchScript or in memory) read as the layers of a
:class:`~mpi_enum.model.network.Network`.

Owns the reading of a model's forward pass; :mod:`.pytorch` owns the files.  The forward pass is
traced with ``torch.fx`` where it can be (any module whose ``forward`` combines layers, functional
activations, ``view``/``flatten``, residual adds, ``torch.cat``, ...); a TorchScript model, or one
that ``fx`` cannot trace, is read as the chain of its submodules in order, and that reading is then
checked against the model's own forward pass on random inputs (a mismatch is refused, never
enumerated).  A ``torch.export`` program (``.pt2``) is an fx graph of ATen operators already: it is
read as it stands (its input-shape guard skipped, ``aten.*`` operators mapped to the same rules).

Folding: every affine step (``Linear``, ``Conv1d``/``Conv2d`` with any stride, padding, dilation
and groups, ``AvgPool``, ``AdaptiveAvgPool``, ``BatchNorm`` in eval mode, ``Flatten``,
``Dropout``, ``Identity``, reshapes, adding or scaling by constants, the sum or difference of two
data tensors, ``torch.cat``/``torch.concat``) is applied to the batch ``[0, e_1, ..., e_m]`` of
basis tensors of the current state in float64, so that row 0 holds the constant part and row
``1 + j`` minus row 0 the j-th column of the tensor's affine map of the state: exact for affine
maps, whatever the module.  An activation (``ReLU``, ``LeakyReLU``, ``PReLU`` modules;
``relu``, ``leaky_relu``, ``prelu`` functions) ends a hidden layer; in the fx graph every other
tensor read later (``node.users`` after the node) is carried into it as linear neurons
(:mod:`.lowering`).  A max pool (``[Adaptive]MaxPool1d/2d/3d``, ``F.max_pool*``, ``aten.max_pool*``;
indices unread) ends a hidden layer of max groups, one per pooled entry (:mod:`.pooling`).  A
trailing ``Softmax``/``LogSoftmax`` (or ``argmax``) is dropped: it does not change the activation
regions.  Anything else (ReLU6, MaxUnpool, a product of two data tensors) is an InputError naming it.
"""
from __future__ import annotations

import copy
import operator

import numpy as np

from ..errors import InputError
from ._builder import Builder
from .lowering import close_layer, fx_live, probe_slopes
from .pooling import close_max_layer, is_selection, torch_call_windows, torch_kind, torch_module_windows

AFFINE_MODULES = {"Linear", "Conv1d", "Conv2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
                  "BatchNorm1d", "BatchNorm2d", "Flatten", "Unflatten", "Dropout", "Dropout1d", "Dropout2d",
                  "Identity"}
PASS_MODULES = {"Dropout", "Dropout1d", "Dropout2d", "Identity"}  # a ReLU output stays one
DROP_MODULES = {"Softmax", "LogSoftmax"}
ACT_MODULES = {"ReLU", "LeakyReLU", "PReLU"}
POOL_MODULES = {f"{a}MaxPool{n}d" for a in ("", "Adaptive") for n in (1, 2, 3)}
KNOWN = AFFINE_MODULES | DROP_MODULES | ACT_MODULES | POOL_MODULES
SUPPORTED = ("Linear, Conv1d, Conv2d, AvgPool1d/2d, AdaptiveAvgPool1d/2d, BatchNorm1d/2d, Flatten, Dropout, "
             "Identity, ReLU, LeakyReLU, PReLU, MaxPool1d/2d/3d, AdaptiveMaxPool1d/2d/3d, residual adds, torch.cat "
             "and a trailing Softmax/LogSoftmax")
_AFFINE_METHODS = {"view", "reshape", "flatten", "contiguous", "double", "float"}
_META_METHODS = {"size", "dim"}
_DROP_METHODS = {"softmax", "log_softmax", "argmax"}


def _aten(*names):
    """The ATen operators of a ``torch.export`` graph (``aten.conv2d.default``, ...) that exist."""
    import torch

    out = set()
    for name in names:
        op, _, overload = name.partition(".")
        packet = getattr(torch.ops.aten, op, None)
        f = getattr(packet, overload, None) if packet is not None else None
        if f is not None:
            out.add(f)
    return out


def _affine_functions():
    import torch
    import torch.nn.functional as F

    return {torch.flatten, torch.reshape, F.linear, F.conv1d, F.conv2d, F.avg_pool1d, F.avg_pool2d,
            F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, operator.neg, operator.pos} | _aten(
        "linear.default", "conv1d.default", "conv2d.default", "avg_pool1d.default", "avg_pool2d.default",
        "adaptive_avg_pool1d.default", "adaptive_avg_pool2d.default", "flatten.using_ints", "view.default",
        "reshape.default", "neg.default", "clone.default", "contiguous.default", "alias.default")


def _act_functions():
    import torch
    import torch.nn.functional as F

    return {torch.relu, F.relu, torch.relu_, F.leaky_relu, F.prelu, torch.prelu} | _aten(
        "relu.default", "leaky_relu.default", "prelu.default")


def _sum_functions():
    import torch

    return {operator.add, operator.sub, operator.iadd, operator.isub, torch.add, torch.sub} | _aten(
        "add.Tensor", "sub.Tensor")


def _drop_functions():
    import torch
    import torch.nn.functional as F

    return {torch.softmax, F.softmax, torch.log_softmax, F.log_softmax, torch.argmax}


def tname(m):
    """A module's class name (TorchScript keeps it as ``original_name``)."""
    return getattr(m, "original_name", None) or type(m).__name__


def not_supported(path, what, where=""):
    at = f" ({where})" if where else ""
    return InputError(f"{path}: unsupported PyTorch {what}{at}: not supported yet (the loader reads: {SUPPORTED})")


class _Stack:
    """A data tensor as its values on the basis batch: ``t`` (m + 1, *shape), float64; ``pair``:
    it stands for a max pool's (values, indices), read by ``getitem``."""

    __slots__ = ("t", "stage", "fresh", "dropped", "pair")

    def __init__(self, t, stage, fresh=False, dropped=None, pair=False):
        self.t, self.stage, self.fresh, self.dropped, self.pair = t, stage, fresh, dropped, pair


class _Fold:
    """The layers read so far and the rules every step on the data obeys.  ``live`` (set by the fx
    reading): the ``(key, _Stack)`` read after the current node; ``moved(key, stack)`` stores a
    carried tensor's new stack."""

    def __init__(self, path):
        self.path = path
        self.builder = Builder(path)
        self.live = lambda: []
        self.moved = None

    @property
    def stage(self):
        return self.builder.stage

    def start(self, shape):
        import torch

        m = int(np.prod(shape))
        self.builder.n_in = m
        B = torch.zeros(m + 1, m, dtype=torch.float64)
        B[1:] = torch.eye(m, dtype=torch.float64)
        return B.reshape((m + 1,) + tuple(shape))

    def check(self, stacks, what, many=False):
        if len(stacks) > 1 and not many:
            raise InputError(f"{self.path}: {what} combines two data tensors in a way that is not affine: not "
                             "supported (only sums, differences and torch.cat of data tensors are)")
        for st in stacks:
            if st.dropped:
                raise InputError(f"{self.path}: {what} comes after a {st.dropped}: a {st.dropped} is accepted only as "
                                 "the last operation (where it does not change the activation regions)")
            if st.stage != self.stage:  # cannot happen: every tensor read later is carried
                raise InputError(f"{self.path}: {what} reads a tensor from before a later activation, which was not "
                                 "carried past it")
        return stacks[0]

    def affine(self, st):
        F = st.t.reshape(st.t.shape[0], -1).detach().numpy()
        c = F[0].copy()
        return np.ascontiguousarray((F[1:] - c).T), c

    def from_map(self, A, c, shape):
        """The stack of the map (A, c) of the current state, as a tensor of ``shape`` per sample."""
        import torch

        return torch.from_numpy(np.concatenate([c[None, :], c[None, :] + A.T])).reshape((-1,) + tuple(shape))

    def activate(self, st, slopes):
        """A new hidden layer: ``st`` gated with ``slopes``, every live tensor carried (linear)."""
        A, c = self._close(lambda items: close_layer(self.builder, *self.affine(st), slopes, items))
        return _Stack(self.from_map(A, c, st.t.shape[1:]), self.stage, fresh=not np.any(slopes))

    def maxpool(self, st, win, pair=False):
        """A max pool of ``st`` with the windows ``win``: a new hidden layer of max groups (every live
        tensor carried), or, when every window has one entry, a selection (affine)."""
        if is_selection(win):
            t = st.t.reshape(st.t.shape[0], -1)[:, win[1]].reshape((-1,) + tuple(win[0]))
            return _Stack(t, st.stage, st.fresh, pair=pair)
        A, c = self._close(lambda items: close_max_layer(self.builder, *self.affine(st), win, items))
        return _Stack(self.from_map(A, c, win[0]), self.stage, fresh=st.fresh, pair=pair)  # max of ReLUs >= 0

    def _close(self, close):
        live = self.live()
        out, moved = close([(k, _key(v)) + self.affine(v) for k, v in live])
        for k, v in live:
            self.moved(k, _Stack(self.from_map(*moved[k], v.t.shape[1:]), self.stage, v.fresh))
        return out

    def drop(self, st, what):
        return _Stack(st.t, st.stage, st.fresh, dropped=what)

    def finish(self, st):
        A, c = self.affine(st)
        if not self.builder.layers:
            raise InputError(f"{self.path}: the model has no activation (ReLU, LeakyReLU, PReLU, MaxPool): it is "
                             "affine, with no activation regions to enumerate (expected a torch.nn.Sequential, or a "
                             "module whose forward combines affine layers and activations)")
        meta = {"format": "torch"}
        if st.fresh:
            meta["output_relu"] = True
        if st.dropped:
            meta["notes"] = [f"dropped trailing {st.dropped}: it does not change the activation regions"]
        return self.builder.finish(A, c, meta)


def _key(st):
    """Equal for two stacks holding the same values in the same order (views of one tensor)."""
    t = st.t
    return ("mem", t.data_ptr(), t.numel()) if t.is_contiguous() else ("id", id(t))


def _module_step(fold, m, st, where):
    """One submodule applied to the stack (the walk and the fx trace share it)."""
    t = tname(m)
    if t in ACT_MODULES:
        st = fold.check([st], where)
        if st.fresh:  # every entry is a ReLU output (>= 0): the activation is the identity
            return st
        return fold.activate(st, probe_slopes(m, st.t.shape[1:], fold.path, where))
    if t in DROP_MODULES:
        return fold.drop(fold.check([st], where), t)
    if t in POOL_MODULES:
        st = fold.check([st], where)
        return fold.maxpool(st, torch_module_windows(m, t, st.t.shape[1:], fold.path, where))
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
    if tgt in (torch.cat, torch.concat) or tgt in _aten("cat.default"):
        return _cat(fold, args, kwargs, stacks, what)
    if tgt is operator.getitem and stacks[0].pair and len(args) == 2:  # a max pool's (values, indices)
        if args[1] != 0 and node.users:
            raise InputError(f"{fold.path}: {what}: the indices of a max pool are read: only its values are supported")
        return _Stack(args[0].t, args[0].stage, args[0].fresh) if args[1] == 0 else None
    if node.op == "call_function" and torch_kind(tgt):  # a max pool
        st, where = fold.check(stacks, what), f"{what} ({label})"
        return fold.maxpool(st, *torch_call_windows(tgt, unwrap[1:], kw, st.t.shape[1:], fold.path, where))
    summed = tgt in _sum_functions() or (node.op == "call_method" and tgt in ("add", "sub"))
    st = fold.check(stacks, what, many=summed and len(stacks) == 2)
    if (node.op == "call_method" and tgt in ("relu", "relu_")) or tgt in _act_functions():
        if st.fresh:  # every entry is a ReLU output (>= 0): the activation is the identity
            return st
        f = (lambda z: z.relu()) if node.op == "call_method" else (lambda z: tgt(z, *unwrap[1:], **kw))
        return fold.activate(st, probe_slopes(f, st.t.shape[1:], fold.path, f"{what} ({label})"))
    if (node.op == "call_method" and tgt in _DROP_METHODS) or tgt in _drop_functions():
        return fold.drop(st, {"softmax": "Softmax", "log_softmax": "LogSoftmax", "argmax": "ArgMax"}.get(
            label, label))
    linear = (node.op == "call_method" and tgt in _AFFINE_METHODS) or tgt in _affine_functions() or summed
    if tgt is torch.nn.functional.dropout:  # the identity once traced in eval mode
        linear = kw.get("training", unwrap[3] if len(unwrap) > 3 else True) is False
    if tgt in _aten("mul.Tensor", "div.Tensor") and len(args) == 2:  # torch.export's c x and x / c
        linear = len(stacks) == 1 and _is_const(args[1]) or (tgt in _aten("mul.Tensor") and _is_const(args[0]))
    if tgt in (operator.mul, operator.truediv) and len(args) == 2:
        linear = tgt is not operator.truediv or _is_const(args[1])  # c x and x / c: affine; c / x is not
    if not linear:
        raise not_supported(fold.path, f"operation {label!r}", what)
    tgt = {operator.iadd: operator.add, operator.isub: operator.sub}.get(tgt, tgt)  # never change a stack in place
    f = getattr(unwrap[0], tgt) if node.op == "call_method" else tgt
    out = f(*unwrap[1:], **kw) if node.op == "call_method" else f(*unwrap, **kw)
    return _Stack(out, st.stage)


def _cat(fold, args, kwargs, stacks, what):
    """``torch.cat(tensors, dim)`` of data tensors (and constants of batch size 1) along a non-batch dim."""
    import torch

    fold.check(stacks, what, many=True)
    seq, rest = args[0], list(args[1:])
    dim = kwargs.get("dim", rest[0] if rest else 0)
    rows, nd = stacks[0].t.shape[0], stacks[0].t.dim()
    if not isinstance(dim, int) or dim % nd == 0:
        raise InputError(f"{fold.path}: {what}: torch.cat along the batch dimension is not supported")
    parts = []
    for a in seq:
        if isinstance(a, _Stack):
            parts.append(a.t)
            continue
        a = torch.as_tensor(a, dtype=torch.float64)
        if a.dim() != nd or a.shape[0] != 1:
            raise InputError(f"{fold.path}: {what}: torch.cat of the data with a constant of shape {tuple(a.shape)} "
                             "(only constants of batch size 1 can be concatenated)")
        parts.append(a.expand((rows,) + tuple(a.shape[1:])))
    try:
        out = torch.cat(parts, dim=dim)
    except Exception as exc:
        raise InputError(f"{fold.path}: {what}: cannot concatenate ({type(exc).__name__})") from None
    return _Stack(out, fold.stage)


def _fx(gm, fold, shape):
    import torch.fx

    env, first = {}, True
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    here = [None]
    fold.live = lambda: [(u, env[u]) for u in fx_live(here[0], order, env, lambda v: isinstance(v, _Stack))]
    fold.moved = env.__setitem__
    for node in gm.graph.nodes:
        here[0] = node
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
        elif node.op == "call_module" and str(node.target).startswith("_guards"):
            env[node] = None  # torch.export's input-shape guard: no data flows through it
        elif node.op == "output":
            res = node.args[0]
            if isinstance(res, (tuple, list)) and len(res) == 1:  # torch.export returns (out,)
                res = res[0]
            out = env[res] if isinstance(res, torch.fx.Node) else None
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

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's notices while copying and converting
        return _network_of(model, path, copy_model)


def _network_of(model, path, copy_model):
    import torch

    try:
        m = copy.deepcopy(model) if copy_model else model
        m = m.double()
        try:
            m = m.eval()
        except NotImplementedError:  # a torch.export module: its mode was fixed when it was exported
            pass
    except Exception as exc:
        raise InputError(f"{path}: cannot make a float64 copy of the model ({type(exc).__name__})") from None
    scripted = isinstance(m, torch.jit.ScriptModule)
    for name, leaf in _named_leaves(m):  # a known unsupported layer is named before anything else
        t = tname(leaf)
        if type(leaf) is torch.nn.Module or str(name).startswith("_guards"):
            continue  # a torch.export graph's parameter holder, or its input-shape guard
        if (scripted or type(leaf).__module__.startswith("torch.nn")) and t not in KNOWN:
            raise not_supported(path, f"module {t!r}", f"layer {name!r}")
    shape = input_shape(m, path)
    gm = None
    if not scripted:
        try:
            import torch.fx

            # a torch.export module is a graph already (tracing it again would inline its guards)
            gm = m if isinstance(m, torch.fx.GraphModule) else torch.fx.symbolic_trace(m)
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
    T = torch.from_numpy(X.reshape((16,) + tuple(shape)))
    try:
        ref = m(T)
    except Exception:
        try:  # a model exported for batch size 1 (torch.export's guards): one sample at a time
            ref = torch.cat([m(T[i:i + 1]) for i in range(16)])
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
