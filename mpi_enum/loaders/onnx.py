"""ONNX networks (CONTRACT §1; needs the ``onnx`` package).

The graph must be a DAG from its single (non-initializer) input to its single output, of the
operators below.  The batch dimension is taken as 1 (symbolic dimensions too); every other input
dimension must be known.  Operators on the data path:

* affine, folded into the current layer: ``Gemm`` (transA, transB, alpha, beta; the data may be
  either operand), ``MatMul`` (either side), ``Add``/``Sub`` (with a constant, or of two data
  tensors: a residual connection), ``Mul``/``Div`` by a constant, ``Neg``, ``Conv`` (any kernel,
  strides, pads, dilations, groups), ``BatchNormalization`` (inference form), ``AveragePool``,
  ``GlobalAveragePool``, ``Pad`` (constant 0), ``Concat`` (of data tensors and constants);
* shape only: ``Flatten``, ``Reshape``, ``Transpose``, ``Squeeze``, ``Unsqueeze``, ``Identity``,
  ``Dropout``, ``Cast`` to float;
* activations, each ending a hidden layer (its gated neurons are the flattened tensor's entries):
  ``Relu``, ``Clip`` with min = 0 and no max (a ReLU; a Clip with a finite max is refused: it has
  a second kink), ``LeakyRelu`` (``alpha``, default 0.01; the float32 attribute is read as the
  shortest decimal that rounds to it, so 0.01 is 0.01) and ``PRelu`` (a constant slope,
  broadcast to the data's shape: per channel for NCHW);
* max pools, each ending a hidden layer of max groups (:mod:`.pooling`): ``MaxPool`` (any
  kernel_shape, strides, pads, dilations, ceil_mode; auto_pad NOTSET, VALID, SAME_UPPER or
  SAME_LOWER; its Indices output must not be read) and ``GlobalMaxPool``;
* ``Softmax``, ``LogSoftmax``, ``ArgMax`` at the end of the graph: dropped, with a note in the
  network's ``meta["notes"]`` (they do not change the regions); anywhere else an InputError.

Liveness makes the DAG a chain (:mod:`._builder`): every tensor's last consuming node is found up
front, and at an activation the data tensors read after it (a skip path, the other branch of a
Concat, the activation's own input) are carried into the new layer as linear neurons.

Nodes whose inputs are all constants (``Constant``, ``Shape`` of the data, ``Gather``,
``Concat`` of shape pieces, ...) are evaluated once with ``onnx.reference``.  Any other
operator on the data path (``MaxUnpool``, ``LpPool``, ``Sigmoid``, ...) is an InputError naming it.

"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ._builder import Builder as _Builder
from .lowering import check_clip as _check_clip
from .lowering import close_layer, onnx_slopes
from .lowering import onnx_attr as _attr
from .lowering import onnx_constant as _constant_node
from .lowering import onnx_last_uses as _last_uses
from .pooling import close_max_layer, is_selection, onnx_windows


_DROP_OPS = {"Softmax", "LogSoftmax", "ArgMax"}  # trailing only: they do not change the regions
_SHAPE_OPS = {"Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Cast"}
_AFFINE_OPS = {"Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Neg", "Conv", "BatchNormalization",
               "AveragePool", "GlobalAveragePool", "Pad", "Concat"}
_ACT_OPS = {"Relu", "LeakyRelu", "PRelu", "MaxPool", "GlobalMaxPool"}  # each ends a hidden layer
_SUPPORTED = ("Gemm, MatMul, Add, Sub, Mul, Div, Neg, Conv, BatchNormalization, AveragePool, GlobalAveragePool, "
              "Pad, Concat, Relu, LeakyRelu, PRelu, Clip(min=0), MaxPool, GlobalMaxPool, Flatten, Reshape, Transpose, "
              "Squeeze, Unsqueeze, Identity, Dropout; a trailing Softmax, LogSoftmax or ArgMax")


class _Val:
    """A data tensor: flat(value) = A @ s + c (s the current state: the flattened input with batch 1,
    then the last hidden layer's outputs); ``stage`` = hidden layers built when it was made."""

    __slots__ = ("A", "c", "shape", "stage", "after_relu")

    def __init__(self, A, c, shape, stage, after_relu=False):
        self.A, self.c, self.shape, self.stage, self.after_relu = A, c, tuple(int(s) for s in shape), stage, after_relu

    def stacked(self):
        """[c, A[:, 0], ..., A[:, n-1]] as tensors of the value's shape: (n+1, *shape)."""
        return np.concatenate([self.c[None, :], self.A.T], axis=0).reshape((-1,) + self.shape)


def _from_stacked(T, add, stage):
    """Inverse of _Val.stacked after a linear op; ``add`` the op's constant part (or None)."""
    shape = T.shape[1:]
    F = T.reshape(T.shape[0], -1)
    c = F[0].copy()
    if add is not None:
        c = c + np.broadcast_to(add, shape).reshape(-1)
    return _Val(np.ascontiguousarray(F[1:].T), c, shape, stage)


def load_onnx(path):
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise InputError(f"{path}: reading .onnx files needs the 'onnx' package (pip install onnx)") from None
    try:
        model = onnx.load(path)
    except Exception as exc:
        raise InputError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    g = model.graph
    consts = {}
    for init in g.initializer:
        try:
            consts[init.name] = numpy_helper.to_array(init)
        except Exception as exc:
            raise InputError(f"{path}: cannot read initializer {init.name!r} ({type(exc).__name__})") from None
    data_inputs = [i for i in g.input if i.name not in consts]
    if len(data_inputs) != 1:
        raise InputError(f"{path}: the ONNX graph must have exactly one data input, found "
                         f"{[i.name for i in data_inputs]}")
    if len(g.output) != 1:
        raise InputError(f"{path}: the ONNX graph must have exactly one output, found {[o.name for o in g.output]}")
    inp = data_inputs[0]
    tt = inp.type.tensor_type
    if not tt.HasField("shape"):
        raise InputError(f"{path}: the input {inp.name!r} has no shape")
    dims = []
    for i, dd in enumerate(tt.shape.dim):
        if dd.HasField("dim_value") and dd.dim_value > 0:
            dims.append(int(dd.dim_value))
        elif i == 0:
            dims.append(1)  # batch
        else:
            raise InputError(f"{path}: input dimension {i} of {inp.name!r} is unknown ({dd.dim_param or '?'})")
    if len(dims) == 1:
        # a rank-1 input (d,) without a batch axis
        pass
    elif dims[0] != 1:
        dims[0] = 1  # evaluate with batch 1
    d = int(np.prod(dims))
    vals = {inp.name: _Val(np.eye(d), np.zeros(d), dims, 0)}
    builder = _Builder(path)
    builder.n_in = d
    last_use = _last_uses(g)
    dropped = {}  # tensor name -> the trailing Softmax/LogSoftmax/ArgMax it comes from
    opsets = {o.domain: o.version for o in model.opset_import}
    opset = opsets.get("", opsets.get("ai.onnx", 13))

    for idx, node in enumerate(g.node):
        op = node.op_type
        name = node.name or (node.output[0] if node.output else "?")
        ins = list(node.input)
        tracked = [i for i in ins if i in vals]
        if node.domain not in ("", "ai.onnx"):
            raise InputError(f"{path}: unsupported ONNX operator {node.domain}.{op} (node {name!r})")
        if op == "Constant":
            consts[node.output[0]] = _constant_node(node, path)
            continue
        if not tracked:
            if op == "Shape" or all(i == "" or i in consts for i in ins):
                consts.update(_eval_const(node, consts, vals, path, opset))
                continue
            missing = [i for i in ins if i and i not in consts]
            raise InputError(f"{path}: node {name!r} ({op}) reads {missing}, which is neither the data nor a constant")
        if op == "Shape":
            v = vals[tracked[0]]
            shp = np.array(v.shape, dtype=np.int64)
            start = _attr(node, "start", 0)
            end = _attr(node, "end", None)
            consts[node.output[0]] = shp[start:end]
            continue
        late = [t for t in tracked if t in dropped]
        if late:
            if op in _DROP_OPS or op in _SHAPE_OPS:
                dropped[node.output[0]] = dropped[late[0]]
                vals[node.output[0]] = vals[late[0]]
                continue
            raise InputError(f"{path}: node {name!r} ({op}) comes after a {dropped[late[0]]}: a {dropped[late[0]]} is "
                             "accepted only at the end of the graph (where it does not change the activation regions)")
        if op in _DROP_OPS:
            dropped[node.output[0]] = op
            vals[node.output[0]] = vals[ins[0]]
            continue
        if op == "Clip":
            _check_clip(node, ins, consts, opset, path, name)
            op = "Relu"
        if op not in _SHAPE_OPS and op not in _AFFINE_OPS and op not in _ACT_OPS:
            raise InputError(f"{path}: unsupported ONNX operator {op!r} (node {name!r}); supported on the data path: "
                             f"{_SUPPORTED}")
        stale = [t for t in tracked if vals[t].stage != builder.stage]
        if stale:  # cannot happen: liveness carries every tensor read after an activation
            raise InputError(f"{path}: node {name!r} ({op}) reads {stale[0]!r} from before a later activation, "
                             "which was not carried past it")
        if op in _ACT_OPS:
            if ins[0] not in vals:
                raise InputError(f"{path}: node {name!r} ({op}): the data must be its first input")
            _activate(builder, node, op, ins, vals, consts, last_use, idx, path, name)
            continue
        if len(tracked) > 1 and not (op in ("Add", "Sub") and len(tracked) == 2 or op == "Concat"):
            raise InputError(f"{path}: node {name!r} ({op}) combines several data tensors; only Add, Sub and "
                             "Concat of data tensors are affine")
        try:
            out = _apply(op, node, ins, vals, consts, path, name, opset)
        except InputError:
            raise
        except (ValueError, IndexError, TypeError, KeyError) as exc:
            raise InputError(f"{path}: node {name!r} ({op}): cannot apply to the data of shape "
                             f"{vals[tracked[0]].shape} ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:80] if str(exc) else ''})") from None
        for o in node.output[1:]:
            if o:
                consts[o] = np.zeros(0)  # e.g. Dropout's mask: unused
        vals[node.output[0]] = out

    oname = g.output[0].name
    if oname not in vals:
        raise InputError(f"{path}: the graph output {oname!r} does not depend on the input")
    v = vals[oname]
    meta = {"format": "onnx", "opset": opset}
    if v.after_relu:
        meta["output_relu"] = True  # the output layer is the identity after the last ReLU
    if oname in dropped:
        meta["notes"] = [f"dropped trailing {dropped[oname]}: it does not change the activation regions"]
    return builder.finish(v.A, v.c, meta)


def _activate(builder, node, op, ins, vals, consts, last_use, idx, path, name):
    """A Relu/LeakyRelu/PRelu node (or a max pool: a layer of max groups): a new hidden layer;
    the tensors read later are carried."""
    v = vals[ins[0]]
    if op in ("MaxPool", "GlobalMaxPool"):
        win = onnx_windows(node, op, v.shape, len(node.output) > 1 and node.output[1] in last_use, path, name)
        if is_selection(win):  # windows of one entry each: the pool picks entries (affine)
            vals[node.output[0]] = _Val(v.A[win[1]], v.c[win[1]], win[0], v.stage, v.after_relu)
            return
    elif v.after_relu:  # every entry is a ReLU output (>= 0): any of these activations is the identity
        vals[node.output[0]] = v
        return
    # the data tensors read after this node; aliases (Identity, Reshape) share their arrays
    live = [(t, (id(w.A), id(w.c)), w.A, w.c) for t, w in vals.items()
            if w.stage == builder.stage and last_use.get(t, -1) > idx]
    if op in ("MaxPool", "GlobalMaxPool"):
        (A, c), moved = close_max_layer(builder, v.A, v.c, win, live)
        shape, fresh = win[0], v.after_relu  # a max of ReLU outputs is one (>= 0)
    else:
        slopes = onnx_slopes(node, op, ins, v.shape, consts, path, name)
        (A, c), moved = close_layer(builder, v.A, v.c, slopes, live)
        shape, fresh = v.shape, not np.any(slopes)
    stage = builder.stage
    for t, (At, ct) in moved.items():
        vals[t] = _Val(At, ct, vals[t].shape, stage, vals[t].after_relu)
    vals[node.output[0]] = _Val(A, c, shape, stage, after_relu=fresh)


def _eval_const(node, consts, vals, path, opset):
    """Constant-fold one node with onnx.reference."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    if node.op_type == "Shape":
        v = vals.get(node.input[0])
        if v is None and node.input[0] in consts:
            shp = np.array(np.shape(consts[node.input[0]]), np.int64)
        elif v is None:
            raise InputError(f"{path}: Shape node {node.name!r} reads an unknown tensor")
        else:
            shp = np.array(v.shape, np.int64)
        return {node.output[0]: shp[_attr(node, "start", 0):_attr(node, "end", None)]}
    ins = [i for i in node.input if i]
    try:
        graph = helper.make_graph(
            [node], "fold",
            [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(np.asarray(consts[i]).dtype), None)
             for i in ins],
            [helper.make_tensor_value_info(o, 0, None) for o in node.output if o])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        res = ReferenceEvaluator(model).run(None, {i: np.asarray(consts[i]) for i in ins})
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: cannot evaluate constant node {node.name!r} ({node.op_type}): "
                         f"{type(exc).__name__}") from None
    return {o: np.asarray(r) for o, r in zip([o for o in node.output if o], res)}


def _const(consts, name, path, node_name, what):
    if name not in consts:
        raise InputError(f"{path}: node {node_name!r}: {what} {name!r} must be a constant (initializer)")
    return np.asarray(consts[name], dtype=np.float64)


def _apply(op, node, ins, vals, consts, path, name, opset):
    """Apply an affine/shape operator to the tracked value(s); returns the new _Val."""
    # the data operand and its stacked form
    pos = [i for i, x in enumerate(ins) if x in vals]
    v = vals[ins[pos[0]]]
    stage = v.stage
    T = v.stacked()  # (P, *shape)

    def done(Tn, add=None):
        return _from_stacked(Tn, add, stage)

    if op in ("Identity", "Dropout", "Cast"):
        if op == "Cast":
            to = _attr(node, "to", 1)
            if to not in (1, 10, 11, 16):  # float, float16, double, bfloat16
                raise InputError(f"{path}: node {name!r}: Cast of the data to a non-float type is not supported")
        return _Val(v.A, v.c, v.shape, stage, v.after_relu)
    if op == "Flatten":
        axis = _attr(node, "axis", 1)
        shp = v.shape
        axis = axis + len(shp) if axis < 0 else axis
        new = (int(np.prod(shp[:axis])), int(np.prod(shp[axis:])))
        return _Val(v.A, v.c, new, stage, v.after_relu)
    if op == "Reshape":
        shape = consts.get(ins[1]) if len(ins) > 1 else _attr(node, "shape")
        if shape is None:
            raise InputError(f"{path}: node {name!r}: Reshape needs a constant shape")
        shape = [int(s) for s in np.asarray(shape).reshape(-1)]
        allowzero = _attr(node, "allowzero", 0)
        new = []
        for i, s in enumerate(shape):
            new.append(v.shape[i] if (s == 0 and not allowzero) else s)
        total = int(np.prod(v.shape))
        if -1 in new:
            known = int(np.prod([s for s in new if s != -1]))
            new[new.index(-1)] = total // max(known, 1)
        if int(np.prod(new)) != total:
            raise InputError(f"{path}: node {name!r}: cannot reshape {v.shape} to {shape} (batch size taken as 1)")
        return _Val(v.A, v.c, new, stage, v.after_relu)
    if op in ("Squeeze", "Unsqueeze"):
        axes = consts.get(ins[1]) if len(ins) > 1 and ins[1] else _attr(node, "axes")
        shp = list(v.shape)
        if op == "Squeeze":
            if axes is None:
                new = [s for s in shp if s != 1]
            else:
                ax = {int(a) % len(shp) for a in np.asarray(axes).reshape(-1)}
                new = [s for i, s in enumerate(shp) if i not in ax]
        else:
            ax = sorted(int(a) % (len(shp) + len(np.asarray(axes).reshape(-1))) for a in np.asarray(axes).reshape(-1))
            new = shp
            for a in ax:
                new = new[:a] + [1] + new[a:]
        return _Val(v.A, v.c, new, stage, v.after_relu)
    if op == "Transpose":
        perm = _attr(node, "perm")
        if perm is None:
            perm = list(range(len(v.shape)))[::-1]
        return done(np.transpose(T, [0] + [p + 1 for p in perm]))
    if op == "Neg":
        return done(-T)
    if op == "Concat":
        axis = int(_attr(node, "axis", 0))
        parts = []
        for x in ins:
            if x in vals:
                parts.append(vals[x].stacked())
            else:
                C = _const(consts, x, path, name, "a non-data operand")
                parts.append(np.concatenate([C[None], np.zeros((T.shape[0] - 1,) + C.shape)]))
        if any(p.ndim != T.ndim for p in parts):
            raise InputError(f"{path}: node {name!r}: Concat of tensors of different ranks")
        axis = axis + T.ndim - 1 if axis < 0 else axis
        return done(np.concatenate(parts, axis=axis + 1))
    if op in ("Add", "Sub"):
        if len(pos) == 2:
            w = vals[ins[pos[1]]]
            sign = -1.0 if op == "Sub" else 1.0
            try:
                shape = np.broadcast_shapes(v.shape, w.shape)
            except ValueError:
                raise InputError(f"{path}: node {name!r}: shapes {v.shape} and {w.shape} do not broadcast") from None
            Tv = np.broadcast_to(T, (T.shape[0],) + shape)
            Tw = np.broadcast_to(w.stacked(), (T.shape[0],) + shape)
            return done(Tv + sign * Tw)
        other = _const(consts, ins[1 - pos[0]], path, name, "the other operand")
        shape = _bshape(v.shape, other.shape, path, name)
        Tb = np.broadcast_to(T, (T.shape[0],) + shape)
        if op == "Add":
            return done(Tb.copy(), other)
        if pos[0] == 0:  # x - C
            return done(Tb.copy(), -other)
        return done(-Tb, other)  # C - x
    if op in ("Mul", "Div"):
        if len(pos) == 2:
            raise InputError(f"{path}: node {name!r}: {op} of two data tensors is not affine")
        other = _const(consts, ins[1 - pos[0]], path, name, "the other operand")
        shape = _bshape(v.shape, other.shape, path, name)
        if op == "Div":
            if pos[0] != 0:
                raise InputError(f"{path}: node {name!r}: division by the data is not affine")
            return done(np.broadcast_to(T, (T.shape[0],) + shape) / other)
        return done(np.broadcast_to(T, (T.shape[0],) + shape) * other)
    if op == "MatMul":
        if pos[0] == 0:
            B = _const(consts, ins[1], path, name, "the weight")
            if len(v.shape) < 1 or v.shape[-1] != B.shape[0]:
                raise InputError(f"{path}: node {name!r}: MatMul shapes {v.shape} and {B.shape} do not match")
            if len(v.shape) == 1:
                return done(T @ B)
            return done(np.matmul(T, B))
        Aw = _const(consts, ins[0], path, name, "the weight")
        if len(v.shape) == 1:
            return done(np.einsum("ij,pj->pi", Aw, T))
        return done(np.matmul(Aw, T))
    if op == "Gemm":
        alpha = float(_attr(node, "alpha", 1.0))
        beta = float(_attr(node, "beta", 1.0))
        tA = int(_attr(node, "transA", 0))
        tB = int(_attr(node, "transB", 0))
        if len(v.shape) != 2:
            raise InputError(f"{path}: node {name!r}: Gemm needs a 2-D input, got shape {v.shape}")
        C = _const(consts, ins[2], path, name, "the bias C") if len(ins) > 2 and ins[2] else None
        if pos[0] == 0:
            B = _const(consts, ins[1], path, name, "the weight B")
            Ta = np.swapaxes(T, 1, 2) if tA else T
            Bm = B.T if tB else B
            if Ta.shape[2] != Bm.shape[0]:
                raise InputError(f"{path}: node {name!r}: Gemm shapes {v.shape} and {B.shape} do not match")
            Y = alpha * np.matmul(Ta, Bm)
        else:
            Am = _const(consts, ins[0], path, name, "the weight A")
            Am = Am.T if tA else Am
            Tb = np.swapaxes(T, 1, 2) if tB else T
            if Am.shape[1] != Tb.shape[1]:
                raise InputError(f"{path}: node {name!r}: Gemm shapes {Am.shape} and {v.shape} do not match")
            Y = alpha * np.matmul(Am, Tb)
        add = beta * np.broadcast_to(C, Y.shape[1:]) if C is not None else None
        return done(Y, add)
    if op == "BatchNormalization":
        if pos[0] != 0:
            raise InputError(f"{path}: node {name!r}: BatchNormalization parameters must be constants")
        sc, B, mean, var = (_const(consts, ins[i], path, name, "a parameter") for i in range(1, 5))
        eps = float(_attr(node, "epsilon", 1e-5))
        if _attr(node, "training_mode", 0):
            raise InputError(f"{path}: node {name!r}: BatchNormalization in training mode is not supported")
        s = sc / np.sqrt(var + eps)
        bshape = (1, -1) + (1,) * (len(v.shape) - 2) if len(v.shape) >= 2 else (-1,)
        s_b = s.reshape(bshape)
        add = (B - mean * s).reshape(bshape)
        return done(T * s_b, np.broadcast_to(add, v.shape))
    if op in ("Conv", "AveragePool", "GlobalAveragePool", "Pad"):
        return _apply_reference(op, node, ins, pos[0], v, T, consts, path, name, opset, stage)
    raise InputError(f"{path}: unsupported ONNX operator {op!r} (node {name!r})")


def _bshape(a, b, path, name):
    try:
        return tuple(np.broadcast_shapes(tuple(a), tuple(b)))
    except ValueError:
        raise InputError(f"{path}: node {name!r}: shapes {tuple(a)} and {tuple(b)} do not broadcast") from None


def _apply_reference(op, node, ins, p, v, T, consts, path, name, opset, stage):
    """Linear image-like operators, evaluated by onnx.reference with the stack as the batch."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    if p != 0:
        raise InputError(f"{path}: node {name!r}: the data must be the first input of {op}")
    if len(v.shape) < 3 or v.shape[0] != 1:
        raise InputError(f"{path}: node {name!r}: {op} needs an input of shape (1, C, ...), got {v.shape}")
    add = None
    new_ins = ["X"]
    feeds = {"X": T.reshape((T.shape[0],) + v.shape[1:])}
    if op == "Conv":
        W = _const(consts, ins[1], path, name, "the kernel")
        new_ins.append("W")
        feeds["W"] = W
        if len(ins) > 2 and ins[2]:
            add = _const(consts, ins[2], path, name, "the bias")
    elif op == "Pad":
        mode = _attr(node, "mode", "constant")
        if isinstance(mode, bytes):
            mode = mode.decode()
        if mode != "constant":
            raise InputError(f"{path}: node {name!r}: Pad mode {mode!r} is not supported (only constant)")
        for i, x in enumerate(ins[1:], start=1):
            if x:
                arr = np.asarray(consts.get(x)) if x in consts else None
                if arr is None:
                    raise InputError(f"{path}: node {name!r}: Pad inputs must be constants")
                if i == 2 and np.any(arr != 0):
                    raise InputError(f"{path}: node {name!r}: Pad with a non-zero value is not supported")
                nm = f"I{i}"
                new_ins.append(nm)
                feeds[nm] = arr
            else:
                new_ins.append("")
        if float(_attr(node, "value", 0.0) or 0.0) != 0.0:
            raise InputError(f"{path}: node {name!r}: Pad with a non-zero value is not supported")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    try:
        n2 = helper.make_node(op, [i for i in new_ins], ["Y"], **attrs)
        graph = helper.make_graph(
            [n2], "lin",
            [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(np.asarray(feeds[k]).dtype), None)
             for k in new_ins if k],
            [helper.make_tensor_value_info("Y", 0, None)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        Y = ReferenceEvaluator(model).run(None, {k: np.asarray(feeds[k]) for k in new_ins if k})[0]
    except Exception as exc:
        raise InputError(f"{path}: node {name!r}: cannot evaluate {op} ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:80] if str(exc) else ''})") from None
    Y = np.asarray(Y, dtype=np.float64)
    out_shape = (1,) + Y.shape[1:]
    Y = Y.reshape((T.shape[0],) + out_shape)
    if add is not None:
        add = add.reshape((1, -1) + (1,) * (len(out_shape) - 2))
        add = np.broadcast_to(add, out_shape)
    return _from_stacked(Y, add, stage)

