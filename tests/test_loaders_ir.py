"""The ONNX and PyTorch loaders on the extended network IR: LeakyReLU, PReLU, residual adds,
concatenations, an activation whose input is read again, dead passthrough neurons.

Oracles that do not share mpi_enum's code: the framework's own forward pass (PyTorch in float64;
``onnxruntime`` in float32, the only precision its CPU kernels have for Conv), and the activation
patterns read by forward hooks on the model's activation modules (or recorded by the model's own
forward for functional activations), flattened in C order and in execution order, which is the
Network's pattern order (layer-major, each layer's gated neurons first).
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (optional extra: pip install torch)")
torch.set_num_threads(1)
nn = torch.nn
F = torch.nn.functional

from mpi_enum.errors import InputError  # noqa: E402
from mpi_enum.loaders import load_network  # noqa: E402
from mpi_enum.loaders.torch_trace import network_of  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")  # torch.jit / onnx export notices

ACTS = (nn.ReLU, nn.LeakyReLU, nn.PReLU)


# ----------------------------------------------------------------------------- models

def leaky_mlp():
    torch.manual_seed(1)
    m = nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(0.1), nn.Linear(8, 6), nn.LeakyReLU(), nn.Linear(6, 2))
    return m.eval()


def prelu_cnn():
    """Conv2d, PReLU per channel, strided Conv2d, PReLU with one slope, Linear (input (2, 6, 6))."""
    torch.manual_seed(2)
    m = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.PReLU(3), nn.Conv2d(3, 4, 3, stride=2), nn.PReLU(),
                      nn.Flatten(), nn.Linear(16, 3))
    with torch.no_grad():
        m[1].weight.copy_(torch.tensor([-0.5, 0.3, 1.5]))
        m[3].weight.fill_(0.2)
    m.input_shape = (2, 6, 6)
    return m.eval()


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
        self.act1, self.act2 = nn.ReLU(), nn.ReLU()

    def forward(self, x):
        return self.act2(x + self.conv2(self.act1(self.conv1(x))))


class ResNet(nn.Module):
    """Two residual blocks y = relu(x + conv2(relu(conv1(x)))) on the input (2, 4, 4), then Linear."""

    def __init__(self):
        super().__init__()
        self.b1, self.b2 = ResBlock(2), ResBlock(2)
        self.fc = nn.Linear(32, 3)
        self.input_shape = (2, 4, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.b2(self.b1(x)), 1))


class Branches(nn.Module):
    """Two branches on the input, concatenated; functional activations
    (F.relu, F.prelu, F.leaky_relu), their pre-activations recorded in ``rec`` when it is a list."""

    def __init__(self):
        super().__init__()
        self.ca, self.cb = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(2, 2, 1)
        self.slope = nn.Parameter(torch.tensor([0.25, -0.4]))
        self.cc = nn.Conv2d(5, 2, 3)
        self.fc = nn.Linear(8, 2)
        self.rec = None
        self.input_shape = (2, 4, 4)

    def _pre(self, z):
        if self.rec is not None:
            self.rec.append(z)
        return z

    def forward(self, x):
        a = F.relu(self._pre(self.ca(x)))
        b = F.prelu(self._pre(self.cb(x)), self.slope)
        h = torch.cat([a, b], dim=1)
        h = F.leaky_relu(self._pre(self.cc(h)), negative_slope=0.05)
        return self.fc(h.flatten(1))


class Reuse(nn.Module):
    """z = l1(x); h = relu(z); y = leaky(l2(h) + z); out = l3(y) + l4(h): the activation's input z
    and its output h are both read after a later activation."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3, self.l4 = nn.Linear(3, 6), nn.Linear(6, 6), nn.Linear(6, 2), nn.Linear(6, 2)
        self.relu, self.leaky = nn.ReLU(), nn.LeakyReLU(0.2)

    def forward(self, x):
        z = self.l1(x)
        h = self.relu(z)
        y = self.leaky(self.l2(h) + z)
        return self.l3(y) + self.l4(h)


class MaskedSkip(nn.Module):
    """out = l3(relu(l2(relu(l1(x))))) + l4(x * mask): x is carried through both hidden layers,
    but only its two unmasked entries are read at the end (the others are dead passthroughs)."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3, self.l4 = nn.Linear(4, 8), nn.Linear(8, 6), nn.Linear(6, 2), nn.Linear(4, 2)
        self.r1, self.r2 = nn.ReLU(), nn.ReLU()
        self.register_buffer("mask", torch.tensor([1.0, 0.0, 1.0, 0.0]))

    def forward(self, x):
        return self.l3(self.r2(self.l2(self.r1(self.l1(x))))) + self.l4(x * self.mask)


def _seeded(cls, seed):
    torch.manual_seed(seed)
    return cls().eval()


# layer_widths, hidden_widths expected of each model
MODELS = {
    "leaky_mlp": (leaky_mlp, (4,), [8, 6], [8, 6]),
    "prelu_cnn": (prelu_cnn, (2, 6, 6), [108, 16], [108, 16]),
    "resnet": (lambda: _seeded(ResNet, 3), (2, 4, 4), [64, 32, 64, 32], [32, 32, 32, 32]),
    "branches": (lambda: _seeded(Branches, 4), (2, 4, 4), [48 + 32, 32 + 48, 8], [48, 32, 8]),
    "reuse": (lambda: _seeded(Reuse, 5), (3,), [12, 12], [6, 6]),
    "masked_skip": (lambda: _seeded(MaskedSkip, 6), (4,), [8 + 2, 6 + 2], [8, 6]),
}


# ----------------------------------------------------------------------------- oracles

def _hooked(model, X, shape):
    """(float64 output, patterns: pre-activations > 0 of every activation, in execution order)."""
    m = copy.deepcopy(model).double().eval()
    pre = []
    hooks = [a.register_forward_hook(lambda mod, inp, out: pre.append(inp[0]))
             for a in m.modules() if isinstance(a, ACTS)]
    if hasattr(m, "rec"):
        m.rec = pre
    with torch.no_grad():
        out = m(torch.from_numpy(X.reshape((len(X),) + tuple(shape))))
    for h in hooks:
        h.remove()
    pats = torch.cat([(z > 0).reshape(len(X), -1) for z in pre], dim=1)
    return out.reshape(len(X), -1).numpy(), pats.numpy()


def _onnxruntime(path, X, shape):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    Xf = X.astype(np.float32).reshape((len(X), 1) + tuple(shape))
    return np.concatenate([sess.run(None, {name: x})[0].reshape(1, -1) for x in Xf])


def _export_onnx(model, shape, path):
    pytest.importorskip("onnx")
    try:
        torch.onnx.export(copy.deepcopy(model).float(), torch.zeros((1,) + tuple(shape)), str(path), dynamo=False)
    except Exception as exc:  # the exporter needs extras in some torch versions
        pytest.skip(f"torch.onnx.export unavailable ({type(exc).__name__})")


def _check(net, model, shape, n=300, seed=0):
    X = np.random.default_rng(seed).uniform(-1, 1, (n, int(np.prod(shape))))
    ref, pats = _hooked(model, X, shape)
    ours = net.forward(X)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-9 * max(1.0, np.abs(ref).max())
    bits = net.patterns(X)
    assert bits.shape == pats.shape and np.array_equal(bits, pats)
    assert pats.any(axis=0).sum() > 0.5 * pats.shape[1] and (~pats).any(axis=0).sum() > 0.5 * pats.shape[1]
    return X, ours


# ----------------------------------------------------------------------------- tests

@pytest.mark.parametrize("name", list(MODELS))
def test_pickled_model(tmp_path, name):
    make, shape, widths, gated = MODELS[name]
    m = make()
    torch.save(m, tmp_path / f"{name}.pt")
    net = load_network(str(tmp_path / f"{name}.pt"))
    assert net.input_dim == int(np.prod(shape))
    assert net.layer_widths == widths and net.hidden_widths == gated, (net.layer_widths, net.hidden_widths)
    _check(net, m, shape)
    # the in-memory module reads the same
    mem = network_of(m, "<m>")
    assert all(np.array_equal(a, b) for a, b in zip(mem.weights, net.weights))


@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_export(tmp_path, name):
    make, shape, widths, gated = MODELS[name]
    m = make()
    _export_onnx(m, shape, tmp_path / f"{name}.onnx")
    net = load_network(str(tmp_path / f"{name}.onnx"))
    assert net.layer_widths == widths and net.hidden_widths == gated, (net.layer_widths, net.hidden_widths)
    X, ours = _check(net, m, shape)
    ref = _onnxruntime(tmp_path / f"{name}.onnx", X[:50], shape)
    assert np.abs(ours[:50] - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


def test_slopes_and_linear_layout():
    """The IR itself: slopes per gated neuron (per channel for PReLU), linear neurons last in a layer."""
    net = load_network_mem(prelu_cnn())
    assert net.linear is None
    s0 = net.slopes[0].reshape(3, 6, 6)
    assert np.allclose(s0, np.array([-0.5, 0.3, 1.5])[:, None, None])
    assert np.allclose(net.slopes[1], 0.2)
    net = load_network_mem(leaky_mlp())
    assert net.slopes[0].tolist() == [0.1] * 8 and net.slopes[1].tolist() == [0.01] * 6
    net = load_network_mem(_seeded(ResNet, 3))
    assert net.slopes is None
    assert [m.tolist() for m in net.linear] == [[False] * 32 + [True] * 32, [False] * 32] * 2
    # the skip path is the input itself: the carried rows are the identity, their next-layer block too
    assert np.array_equal(net.weights[0][32:], np.eye(32)) and not net.biases[0][32:].any()
    assert np.array_equal(net.weights[1][:, 32:], np.eye(32))


def load_network_mem(model):
    from mpi_enum.loaders import as_network

    return as_network(model)


def test_torchscript_walk_reads_the_new_activations(tmp_path):
    torch.manual_seed(7)
    m = nn.Sequential(nn.Linear(3, 5), nn.LeakyReLU(0.3), nn.Linear(5, 4), nn.PReLU(4), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        m[3].weight.copy_(torch.tensor([0.1, -0.2, 0.0, 0.7]))
    torch.jit.save(torch.jit.script(m), tmp_path / "s.pt")
    net = load_network(str(tmp_path / "s.pt"))
    assert net.hidden_widths == [5, 4] and net.linear is None
    assert np.allclose(net.slopes[1], [0.1, -0.2, 0.0, 0.7])
    _check(net, m, (3,))


def _onnx_graph(path, nodes, inits, d=3, out="y", opset=17):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, d])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]), str(path))


def test_onnx_hand_built_branches(tmp_path):
    """LeakyRelu without alpha (0.01), PRelu with a broadcast slope, two activations of one tensor,
    Add across stages and Concat with a constant; numpy is the oracle."""
    from onnx import helper

    rng = np.random.default_rng(21)
    W0, b0 = rng.normal(size=(5, 3)), rng.normal(size=5) * 0.3
    W1, b1 = rng.normal(size=(5, 5)), rng.normal(size=5) * 0.3
    W2, b2 = rng.normal(size=(2, 15)), rng.normal(size=2)
    sl, const = np.array([0.5, -0.25, 0.0, 0.125, 2.0]), rng.normal(size=(1, 5))
    inits = {"W0": W0, "b0": b0, "W1": W1, "b1": b1, "W2": W2, "b2": b2, "sl": sl, "C": const}
    f = {k: np.asarray(v, np.float32).astype(np.float64) for k, v in inits.items()}
    nodes = [helper.make_node("Gemm", ["x", "W0", "b0"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("LeakyRelu", ["h"], ["b"]),  # a second activation of h
             helper.make_node("Gemm", ["a", "W1", "b1"], ["g"], transB=1),
             helper.make_node("Add", ["g", "h"], ["gh"]),  # h: from before the Relu
             helper.make_node("PRelu", ["gh", "sl"], ["p"]),
             helper.make_node("Sub", ["p", "b"], ["q"]),
             helper.make_node("Concat", ["q", "C", "a"], ["cat"], axis=1),
             helper.make_node("Gemm", ["cat", "W2", "b2"], ["y"], transB=1)]
    _onnx_graph(tmp_path / "br.onnx", nodes, inits)
    net = load_network(str(tmp_path / "br.onnx"))
    X = rng.normal(size=(400, 3))
    H = X @ f["W0"].T + f["b0"]
    A, B = np.maximum(H, 0), np.where(H > 0, H, 0.01 * H)
    GH = A @ f["W1"].T + f["b1"] + H
    P = np.where(GH > 0, GH, f["sl"] * GH)
    ref = np.hstack([P - B, np.repeat(f["C"], len(X), 0), A]) @ f["W2"].T + f["b2"]
    assert np.abs(net.forward(X) - ref).max() <= 1e-9 * max(1.0, np.abs(ref).max())
    assert np.array_equal(net.patterns(X), np.hstack([H > 0, H > 0, GH > 0]))
    assert net.hidden_widths == [5, 5, 5]
    ort = _onnxruntime(tmp_path / "br.onnx", X[:20], (3,))
    assert np.abs(net.forward(X[:20]) - ort).max() <= 1e-4 * max(1.0, np.abs(ort).max())


def _one_line(exc, *needles):
    msg = str(exc.value)
    assert "\n" not in msg and all(s in msg for s in needles), msg


def test_unsupported_operators_one_line(tmp_path):
    from onnx import helper

    # (MaxPool is read since max units: tests/test_loaders_maxpool.py; a Sigmoid after it is not)
    sg = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Sigmoid(), nn.Flatten(), nn.Linear(18, 2))
    torch.save(sg, tmp_path / "sigmoid.pt")
    with pytest.raises(InputError) as exc:
        load_network(str(tmp_path / "sigmoid.pt"))
    _one_line(exc, "sigmoid.pt", "'Sigmoid'", "not supported yet")
    _export_onnx(sg, (1, 8, 8), tmp_path / "sigmoid.onnx")
    with pytest.raises(InputError) as exc:
        load_network(str(tmp_path / "sigmoid.onnx"))
    _one_line(exc, "sigmoid.onnx", "unsupported ONNX operator 'Sigmoid'")

    class Prod(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(3, 4)

        def forward(self, x):
            return self.a(x) * F.leaky_relu(self.b(x))

    with pytest.raises(InputError) as exc:
        network_of(Prod(), "prod")
    _one_line(exc, "prod", "combines two data tensors", "not affine")

    class Six(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 4)

        def forward(self, x):
            return F.relu6(self.a(x))

    with pytest.raises(InputError) as exc:
        network_of(Six(), "six")
    _one_line(exc, "six", "'relu6'", "not supported yet")
    _onnx_graph(tmp_path / "mul.onnx", [helper.make_node("Gemm", ["x", "W", "b"], ["h"], transB=1),
                                        helper.make_node("Relu", ["h"], ["a"]),
                                        helper.make_node("Mul", ["a", "h"], ["y"])],
                {"W": np.ones((3, 3)), "b": np.zeros(3)})
    with pytest.raises(InputError) as exc:
        load_network(str(tmp_path / "mul.onnx"))
    _one_line(exc, "mul.onnx", "(Mul) combines several data tensors")
