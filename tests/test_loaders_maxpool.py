"""Max pools in the ONNX and PyTorch loaders: each pooled entry is a max group of the network IR
whose members are its window's entries.

Oracles that do not share mpi_enum's code: the frameworks' own forward passes (PyTorch in
float64; onnxruntime in float32) and the patterns of :mod:`_pool_oracle` (forward hooks: the
activations' inputs > 0, and each max pool's selector as torch's ``return_indices`` gives it,
one-hot over the window, the windows probed from the module itself); for hand-made ONNX graphs,
onnxruntime's own MaxPool ``Indices`` output and windows probed through onnxruntime.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (optional extra: pip install torch)")
pytest.importorskip("onnx")
torch.set_num_threads(1)
nn = torch.nn
F = torch.nn.functional

import mpi_enum  # noqa: E402
from _pool_oracle import hook_patterns, probe_windows, selector_bits  # noqa: E402
from mpi_enum.errors import InputError  # noqa: E402
from mpi_enum.loaders import load_network  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")  # torch.jit / onnx export notices


# ----------------------------------------------------------------------------- models

def pool1d():
    """Overlapping padded windows, then a ceil_mode pool whose last window has one entry."""
    return nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), nn.MaxPool1d(3, stride=2, padding=1), nn.Conv1d(3, 4, 1),
                         nn.MaxPool1d(2, ceil_mode=True), nn.LeakyReLU(0.1), nn.Flatten(), nn.Linear(12, 2))


def pool2d():
    """conv -> relu -> overlapping padded pool -> conv -> dilated pool -> relu -> linear."""
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1),
                         nn.Conv2d(3, 4, 2), nn.MaxPool2d(2, stride=1, dilation=2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(16, 3))


def ceil2d():
    """A rectangular, padded, dilated ceil_mode pool (a window starting in the end padding dropped)."""
    return nn.Sequential(nn.Conv2d(2, 2, 1), nn.ReLU(),
                         nn.MaxPool2d((2, 3), stride=(2, 2), padding=(1, 0), dilation=(1, 2), ceil_mode=True),
                         nn.Flatten(), nn.Linear(24, 2))


def pool_first():
    """A max pool of the input itself, then linear -> relu -> linear."""
    return nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(9, 5), nn.ReLU(), nn.Linear(5, 2))


def pool3d():
    return nn.Sequential(nn.MaxPool3d(2, stride=1), nn.Flatten(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))


def adaptive():
    """AdaptiveMaxPool2d to sizes that do not divide the input (overlapping windows of two sizes)."""
    return nn.Sequential(nn.Conv2d(2, 3, 1), nn.ReLU(), nn.AdaptiveMaxPool2d((2, 3)), nn.Flatten(), nn.Linear(18, 2))


class Branches(nn.Module):
    """A pool whose input is read again after it (an average pool), a concat and a residual add."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.act1, self.pool, self.avg = nn.ReLU(), nn.MaxPool2d(2), nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(2, 4, 2, stride=2)
        self.act2, self.lin = nn.LeakyReLU(0.2), nn.Linear(36, 2)

    def forward(self, x):
        h = self.act1(self.conv(x))
        y = torch.cat([self.pool(h), self.avg(h)], 1) + self.conv2(h)
        return self.lin(torch.flatten(self.act2(y), 1))


class Functional(nn.Module):
    """pool2d's layers with F.max_pool2d calls (one with return_indices=True, values only read)."""

    def __init__(self, seq):
        super().__init__()
        self.seq = seq

    def forward(self, x):
        s = self.seq
        h = F.max_pool2d(F.relu(s[0](x)), 3, 2, 1)
        h = F.max_pool2d(s[3](h), 2, stride=1, dilation=2, return_indices=True)[0]
        return s[7](torch.flatten(torch.relu(h), 1))


class Functional1d(nn.Module):
    """pool1d's layers with F.max_pool1d calls."""

    def __init__(self, seq):
        super().__init__()
        self.s = seq

    def forward(self, x):
        h = F.max_pool1d(torch.relu(self.s[0](x)), 3, 2, 1)
        return self.s[7](torch.flatten(F.leaky_relu(F.max_pool1d(self.s[3](h), 2, ceil_mode=True), 0.1), 1))


class UsesIndices(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.lin = nn.Conv2d(1, 2, 3), nn.Linear(8, 2)

    def forward(self, x):
        y, i = F.max_pool2d(self.conv(x), 2, return_indices=True)
        return self.lin(torch.flatten(y + 0.0 * i, 1))


# model -> (constructor, input shape, the modules whose patterns make the Network's, formats)
MODELS = {"pool1d": (pool1d, (2, 11), ["1", "2", "4", "5"], ("pt", "pt2", "onnx")),
          "pool2d": (pool2d, (1, 9, 9), ["1", "2", "4", "5"], ("pt", "pt2", "onnx", "jit")),
          "ceil2d": (ceil2d, (2, 7, 9), ["1", "2"], ("pt", "pt2", "onnx")),
          "pool_first": (pool_first, (1, 6, 6), ["0", "3"], ("pt", "pt2", "onnx")),
          "pool3d": (pool3d, (1, 3, 3, 3), ["0", "3"], ("pt", "pt2", "onnx")),
          "adaptive": (adaptive, (2, 5, 7), ["1", "2"], ("pt", "pt2", "jit")),
          "branches": (Branches, (1, 6, 6), ["act1", "pool", "act2"], ("pt", "pt2", "onnx"))}


def _model(name):
    torch.manual_seed(sorted(MODELS).index(name) + 10)
    m = MODELS[name][0]().eval()
    m.input_shape = MODELS[name][1]  # the square-size guess does not fit every shape here
    return m


def _save(model, shape, fmt, path):
    x = torch.zeros((1,) + tuple(shape))
    if fmt == "pt":
        torch.save(model, path)
    elif fmt == "jit":
        torch.jit.save(torch.jit.script(model), path)
    elif fmt == "pt2":
        torch.export.save(torch.export.export(model, (x,)), path)
    else:
        torch.onnx.export(copy.deepcopy(model), x, path, dynamo=False)
    return str(path)


def _inputs(shape, n=200, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, int(np.prod(shape))))


def _ort(path, X, shape):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x.reshape((1,) + tuple(shape)).astype(np.float32)})[0].reshape(1, -1)
                           for x in X])


def _check_ir(net):
    """Each max group is one run; every column of a group in the next layer is the same."""
    assert net.groups is not None
    for l, g in enumerate(net.groups):
        ids = g[g >= 0]
        assert len(np.unique(ids)) == len(np.flatnonzero(np.r_[True, np.diff(g) != 0] & (g >= 0)))
        assert not np.any(net.linear_of(l)[g >= 0])
        Wn = net.weights[l + 1]
        for gid in np.unique(ids):
            cols = Wn[:, g == gid]
            assert np.array_equal(cols, np.repeat(cols[:, :1], cols.shape[1], axis=1))


def _assert_same(net, model, names, shape, X):
    ref, pats = hook_patterns(model.double(), names, X, shape)
    ours = net.forward(X)
    assert np.abs(ours - ref).max() <= 1e-9 * max(1.0, np.abs(ref).max())
    assert np.array_equal(net.patterns(X), pats)


# ----------------------------------------------------------------------------- tests

@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_read_as_the_frameworks_compute(name, tmp_path):
    ctor, shape, names, fmts = MODELS[name]
    model = _model(name)
    X = _inputs(shape)
    widths = None
    for fmt in fmts:
        path = _save(model, shape, fmt, tmp_path / f"{name}.{'pt' if fmt == 'jit' else fmt}")
        net = load_network(path)
        _check_ir(net)
        _assert_same(net, copy.deepcopy(model), names, shape, X)
        if fmt == "onnx" and name != "ceil2d":  # ceil2d: onnxruntime's shape inference keeps the window that
            out = _ort(path, X[:40], shape)  # starts in the end padding (its kernel drops it, as torch does)
            assert np.abs(net.forward(X[:40]) - out).max() <= 1e-4 * max(1.0, np.abs(out).max())
        assert widths is None or net.layer_widths == widths, (fmt, net.layer_widths, widths)
        widths = net.layer_widths
    if name == "pool1d":  # the ceil_mode window {4} of each channel is a linear neuron (no bit)
        assert net.layer_widths[2] - net.hidden_widths[2] == 4
    if name == "branches":  # h rides along the pool's layer as linear neurons (read by the AvgPool and conv2)
        assert net.layer_widths[1] == net.hidden_widths[1] + 72


def test_functional_pools_and_with_indices(tmp_path):
    model = _model("pool2d")
    fmod = Functional(copy.deepcopy(model)).eval()
    fmod.input_shape = (1, 9, 9)
    X = _inputs((1, 9, 9))
    for fmt in ("pt", "pt2"):
        net = load_network(_save(fmod, (1, 9, 9), fmt, tmp_path / f"f.{fmt}"))
        _assert_same(net, copy.deepcopy(model), MODELS["pool2d"][2], (1, 9, 9), X)
    if hasattr(torch.ops.aten, "max_pool2d_with_indices"):  # what torch.export makes of return_indices=True
        gm = torch.export.load(str(tmp_path / "f.pt2")).module()
        assert any("max_pool2d_with_indices" in str(n.target) for n in gm.graph.nodes)
    # the 1-D functional form
    seq = _model("pool1d")
    X = _inputs((2, 11))
    for fmt in ("pt", "pt2"):
        f1 = Functional1d(copy.deepcopy(seq)).eval()
        f1.input_shape = (2, 11)
        net = load_network(_save(f1, (2, 11), fmt, tmp_path / f"f1.{fmt}"))
        _assert_same(net, copy.deepcopy(seq), MODELS["pool1d"][2], (2, 11), X)


def test_a_pool_of_single_entries_is_a_selection(tmp_path):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(1, stride=2), nn.Flatten(), nn.Linear(18, 2))
    model.input_shape = (1, 8, 8)
    X = _inputs((1, 8, 8))
    for fmt in ("pt", "onnx"):
        net = load_network(_save(model, (1, 8, 8), fmt, tmp_path / f"sel.{fmt}"))
        assert net.layer_widths == [72] and net.groups is None
        _assert_same(net, copy.deepcopy(model), ["1"], (1, 8, 8), X)


def test_refused_in_one_line(tmp_path):
    def refused(path, *needles):
        with pytest.raises(InputError) as exc:
            load_network(str(path))
        msg = str(exc.value)
        assert msg.startswith(str(path)) and "\n" not in msg and all(s in msg for s in needles), msg

    torch.manual_seed(0)
    ri = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2, return_indices=True))
    ri.input_shape = (1, 6, 6)
    torch.save(ri, tmp_path / "ri.pt")
    refused(tmp_path / "ri.pt", "layer '2' (MaxPool2d)", "return_indices=True")
    ui = UsesIndices().eval()
    ui.input_shape = (1, 6, 6)
    for fmt in ("pt", "pt2"):
        refused(_save(ui, (1, 6, 6), fmt, tmp_path / f"ui.{fmt}"), "indices of a max pool are read")
    torch.save(nn.Sequential(nn.Conv2d(1, 2, 3), nn.LPPool2d(2, 2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)),
               tmp_path / "lp.pt")
    refused(tmp_path / "lp.pt", "'LPPool2d'", "not supported yet")
    refused(_onnx_pool(tmp_path / "lp.onnx", (1, 2, 4, 4), "LpPool", kernel_shape=[2, 2]),
            "unsupported ONNX operator 'LpPool'")
    refused(_onnx_pool(tmp_path / "idx.onnx", (1, 2, 4, 4), "MaxPool", read_indices=True, kernel_shape=[2, 2]),
            "MaxPool", "Indices")
    refused(_onnx_pool(tmp_path / "pad.onnx", (1, 1, 2), "MaxPool", kernel_shape=[2], dilations=[3], pads=[1, 1]),
            "MaxPool", "entirely in the padding")


# ---------------------------------------------------------------- hand-made ONNX graphs

def _onnx_pool(path, shape, op, read_indices=False, seed=0, **attrs):
    """x -> op(**attrs) -> Flatten -> Gemm -> Relu -> Gemm (random weights; the sizes from
    onnxruntime); ``read_indices``: the pool's Indices are added to its values."""
    from onnx import TensorProto, helper, numpy_helper

    probe = helper.make_model(helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], **attrs)], "p",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]), opset_imports=[helper.make_opsetid("", 17)])
    probe.ir_version = 8
    try:
        sess = _session(probe.SerializeToString())
        n_pool = int(np.prod(sess.run(None, {"x": np.zeros(shape, np.float32)})[0].shape))
    except Exception:  # a pool that onnxruntime refuses too: the loader refuses it before the Gemm
        n_pool = 1
    rng = np.random.default_rng(seed)
    W1, b1 = rng.normal(size=(5, n_pool)).astype(np.float32), rng.normal(size=5).astype(np.float32) * 0.3
    W2, b2 = rng.normal(size=(2, 5)).astype(np.float32), np.zeros(2, np.float32)
    outs = ["y", "i"] if read_indices else ["y"]
    nodes = [helper.make_node(op, ["x"], outs, **attrs)]
    src = "y"
    if read_indices:
        nodes += [helper.make_node("Cast", ["i"], ["fi"], to=TensorProto.FLOAT),
                  helper.make_node("Add", ["y", "fi"], ["yi"])]
        src = "yi"
    nodes += [helper.make_node("Flatten", [src], ["f"]), helper.make_node("Gemm", ["f", "W1", "b1"], ["h"], transB=1),
              helper.make_node("Relu", ["h"], ["r"]), helper.make_node("Gemm", ["r", "W2", "b2"], ["out"], transB=1)]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)]
    inits = [numpy_helper.from_array(a, n) for a, n in ((W1, "W1"), (b1, "b1"), (W2, "W2"), (b2, "b2"))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))], outputs,
                              inits)
    helper_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper_model.ir_version = 8
    open(path, "wb").write(helper_model.SerializeToString())
    return str(path)


ONNX_POOLS = {"pads_dilations_ceil": ((1, 2, 7, 8), dict(kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1],
                                                         dilations=[1, 2], ceil_mode=1)),
              # ceil_mode's last window would start in the end padding: dropped (onnxruntime's kernel and torch;
              # ONNX states it from opset 22), while onnxruntime's shape inference still counts it (so no Gemm after)
              "ceil_drop": ((1, 2, 7, 5), dict(kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)),
              "same_upper": ((1, 2, 6, 7), dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_UPPER")),
              "same_lower": ((1, 2, 6, 7), dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_LOWER")),
              "valid": ((1, 2, 6, 7), dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="VALID")),
              "ceil_1d": ((1, 3, 10), dict(kernel_shape=[3], strides=[2], pads=[1, 0], ceil_mode=1)),
              "pool_3d": ((1, 1, 3, 4, 3), dict(kernel_shape=[2, 2, 2], strides=[1, 2, 1])),
              "global": ((1, 3, 3, 4), {})}


def _session(path_or_bytes):
    ort = pytest.importorskip("onnxruntime")
    so = ort.SessionOptions()
    so.log_severity_level = 3  # ceil_drop: onnxruntime warns that its kernel's shape is not its inferred one
    return ort.InferenceSession(path_or_bytes, so, providers=["CPUExecutionProvider"])


def _pool_only(path, shape, op, attrs):
    """x -> op -> (y[, Indices]): the pool alone, as a network file and as onnxruntime's oracle."""
    from onnx import TensorProto, helper

    outs = ["y", "i"] if op == "MaxPool" else ["y"]
    vi = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    m = helper.make_model(helper.make_graph(
        [helper.make_node(op, ["x"], outs, **attrs)], "p",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))], vi),
        opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    open(path, "wb").write(m.SerializeToString())
    m.graph.output.append(helper.make_tensor_value_info("i", TensorProto.INT64, None))
    return str(path), _session(m.SerializeToString()) if op == "MaxPool" else None


@pytest.mark.parametrize("case", sorted(ONNX_POOLS))
def test_onnx_maxpool_attributes_against_onnxruntime(case, tmp_path):
    shape, attrs = ONNX_POOLS[case]
    op = "GlobalMaxPool" if case == "global" else "MaxPool"
    X = _inputs(shape[1:], n=100)
    Xf = X.astype(np.float32).reshape((-1,) + tuple(shape[1:]))
    Xr = Xf.reshape(len(X), -1).astype(np.float64)  # the float32 inputs: the selectors are compared on them
    path, oracle = _pool_only(tmp_path / "pool.onnx", shape, op, attrs)
    net = load_network(path)
    sess = _session(path)
    out = np.concatenate([sess.run(None, {"x": x[None]})[0].reshape(1, -1) for x in Xf])
    assert np.array_equal(net.forward(Xr), out.astype(np.float64))  # a max of the inputs: exact
    if op == "GlobalMaxPool":
        assert net.hidden_widths == [36] and len(np.unique(net.groups[0])) == 3
    else:  # the selectors: onnxruntime's Indices (flat over the whole tensor), its windows probed through it
        wins = probe_windows(lambda T: torch.from_numpy(np.concatenate(
            [sess.run(None, {"x": t[None].numpy().astype(np.float32)})[0] for t in T]).astype(np.float64)), shape[1:])
        idx = np.concatenate([oracle.run(None, {"x": x[None]})[1].reshape(1, -1) for x in Xf])
        assert np.array_equal(net.patterns(Xr), selector_bits(wins, idx))
    if case == "ceil_drop":
        return
    # then a Gemm -> Relu -> Gemm on the pooled values: the second layer's bits follow
    path = _onnx_pool(tmp_path / "m.onnx", shape, op, **attrs)
    net2 = load_network(path)
    out = np.concatenate([_session(path).run(None, {"x": x[None]})[0] for x in Xf])
    assert np.abs(net2.forward(Xr) - out).max() <= 1e-4 * max(1.0, np.abs(out).max())
    assert np.array_equal(net2.patterns(Xr)[:, :net.n_hidden], net.patterns(Xr))


# ------------------------------------------------------------------------ end to end

def test_enumerate_a_plane_of_a_pooled_cnn(tmp_path):
    """pool2d from its ONNX file on a random plane: every stored point's pattern is the hooks',
    and random points of the plane land in stored regions."""
    name = "pool2d"
    model = _model(name)
    shape, names = MODELS[name][1], MODELS[name][2]
    net = load_network(_save(model, shape, "onnx", tmp_path / "p.onnx"))
    P = np.random.default_rng(5).uniform(-1, 1, (3, int(np.prod(shape))))
    P[1:] = P[0] + 0.3 * (P[1:] - P[0])
    res = mpi_enum.enumerate(net, plane=P)
    assert res.complete and res.n_regions > 30
    stored = {bytes(r) for r in res.patterns}
    assert len(stored) == res.n_regions
    _, pats = hook_patterns(copy.deepcopy(model).double(), names, res.interior_points, shape)
    assert np.array_equal(np.packbits(pats, axis=1), res.patterns)
    st = np.random.default_rng(1).uniform(0, 1, size=(20_000, 2))
    X = P[0] + st[:, :1] * (P[1] - P[0]) + st[:, 1:] * (P[2] - P[0])
    _, S = hook_patterns(copy.deepcopy(model).double(), names, X, shape)
    assert {bytes(r) for r in np.unique(np.packbits(S, axis=1), axis=0)} <= stored
