"""Issue 13, the layers that fold into dense affine maps: PyTorch CNNs (Conv1d/Conv2d, pooling,
BatchNorm, Flatten, Dropout), traced user classes and TorchScript, a trailing Softmax, ONNX
Clip-as-ReLU, and ``--input-box``.

Oracles that do not share mpi_enum's code: the framework's own float64 forward pass, the
activation pattern read by forward hooks on the ReLU modules (or numpy for hand-built ONNX graphs),
``mpi-enum verify`` on a plane through three inputs, and 10^4 random points of that plane, whose
hooked patterns must all be stored regions.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from conftest import pattern_set, read_result, run_cli

torch = pytest.importorskip("torch", reason="torch is not installed (optional extra: pip install torch)")
torch.set_num_threads(1)  # tiny models; idle worker threads would only compete with the CLI subprocesses
nn = torch.nn
F = torch.nn.functional

from mpi_enum.errors import InputError  # noqa: E402
from mpi_enum.loaders import load_network  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")  # torch.jit / onnx export notices


def _randomise_bn(model, seed):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model.eval()


class LeNetish(nn.Module):
    """A user-defined class with a functional forward (traced by torch.fx)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(3, 4, 2, dilation=1)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(36, 3)

    def forward(self, x):
        x = self.act(self.bn(self.conv(x)))
        x = F.relu(self.conv2(x))
        x = self.drop(x.view(x.size(0), -1))
        return F.log_softmax(self.fc(x), dim=1)


class Conv1dNet(nn.Module):
    """Conv1d, BatchNorm1d and ReLU modules called in definition order (TorchScript via trace)."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv1d(2, 3, 3, stride=1, padding=2, dilation=2)
        self.bn = nn.BatchNorm1d(3)
        self.r1 = nn.ReLU()
        self.flat = nn.Flatten()
        self.fc = nn.Linear(24, 6)
        self.r2 = nn.ReLU()
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        return self.out(self.r2(self.fc(self.flat(self.r1(self.bn(self.c(x)))))))


def cnn_sequential():
    """Conv2d (stride, padding), BatchNorm2d, AvgPool2d, grouped dilated Conv2d,
    AdaptiveAvgPool2d, Flatten, Dropout, Linear and a trailing Softmax."""
    torch.manual_seed(3)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, stride=1, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(2),
                      nn.Conv2d(4, 4, 2, groups=2, dilation=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                      nn.Flatten(), nn.Dropout(0.2), nn.Linear(16, 6), nn.ReLU(), nn.Identity(), nn.Linear(6, 3),
                      nn.Softmax(dim=1))
    m.input_shape = (1, 8, 8)  # adaptive pooling runs at any size: the model says which
    return _randomise_bn(m, 3)


def _hooked(model, X, shape):
    """(output before a trailing Softmax/LogSoftmax, ReLU patterns) of the float64 eager model."""
    m = copy.deepcopy(model).double().eval()
    pats, last = [], {}
    hooks = [r.register_forward_hook(lambda mod, inp, out: pats.append((inp[0] > 0).reshape(len(X), -1)))
             for r in m.modules() if isinstance(r, nn.ReLU)]
    hooks += [r.register_forward_hook(lambda mod, inp, out: last.setdefault("pre", inp[0]))
              for r in m.modules() if isinstance(r, (nn.Softmax, nn.LogSoftmax))]
    with torch.no_grad():
        out = m(torch.from_numpy(X.reshape((len(X),) + tuple(shape))))
    for h in hooks:
        h.remove()
    if isinstance(model, LeNetish):  # its second ReLU and its log_softmax are functional: by hand
        with torch.no_grad():
            x = torch.from_numpy(X.reshape((len(X),) + tuple(shape)))
            z = m.conv2(m.act(m.bn(m.conv(x))))
            pats.append((z > 0).reshape(len(X), -1))
            out = m.fc(F.relu(z).reshape(len(X), -1))
    out = last.get("pre", out)
    return out.reshape(len(X), -1).numpy(), torch.cat(pats, dim=1).numpy()


def _check_forward_and_patterns(net, model, shape, n=200, seed=0):
    X = np.random.default_rng(seed).uniform(0, 1, (n, int(np.prod(shape))))
    ref, pats = _hooked(model, X, shape)
    ours = net.forward(X)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-9 * max(1.0, np.abs(ref).max())
    assert np.array_equal(net.patterns(X), pats)


def _plane_check(tmp_path, model_file, model, shape, tag, scale=0.2):
    """mpi-enum run --plane through three inputs, mpi-enum verify, and 10^4 hooked samples."""
    d = int(np.prod(shape))
    P = np.random.default_rng(7).uniform(0, 1, (3, d))
    P[1:] = P[0] + scale * (P[1:] - P[0])  # a small slice: about a hundred regions
    np.save(tmp_path / f"{tag}_plane.npy", P)
    out = tmp_path / f"{tag}.h5"
    p = run_cli(["run", model_file, "-o", out, "--plane", tmp_path / f"{tag}_plane.npy"], check=True)
    v = run_cli(["verify", out, model_file, "--samples", "1000"])
    assert v.returncode == 0, v.stdout + v.stderr
    res = read_result(out)
    assert len(res.bits) > 5
    st = np.random.default_rng(8).uniform(0, 1, (10_000, 2))
    X = P[0] + st[:, :1] * (P[1] - P[0]) + st[:, 1:] * (P[2] - P[0])
    _, pats = _hooked(model, X, shape)
    stored = pattern_set(res.bits)
    assert pattern_set(pats.astype(np.uint8)) <= stored
    return p


def test_pickled_cnn_sequential(tmp_path):
    m = cnn_sequential()
    torch.save(m, tmp_path / "cnn.pt")
    net = load_network(str(tmp_path / "cnn.pt"))
    assert net.hidden_widths == [256, 64, 6]
    assert net.meta["notes"] == ["dropped trailing Softmax: it does not change the activation regions"]
    _check_forward_and_patterns(net, m, (1, 8, 8))
    p = _plane_check(tmp_path, tmp_path / "cnn.pt", m, (1, 8, 8), "cnn")
    assert "note: dropped trailing Softmax: it does not change the activation regions" in p.stderr


def test_traced_user_class_and_torchscript(tmp_path):
    torch.manual_seed(4)
    m = _randomise_bn(LeNetish(), 4)
    m.input_shape = (1, 8, 8)  # stride 2: 7x7 fits fc as well as 8x8
    torch.save(m, tmp_path / "lenet.pt")  # the class is importable (this test module)
    net = load_network(str(tmp_path / "lenet.pt"))
    assert net.input_dim == 64 and net.hidden_widths == [48, 36]
    _check_forward_and_patterns(net, m, (1, 8, 8))
    torch.save(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 2)), tmp_path / "s.pt")
    assert load_network(str(tmp_path / "s.pt")).input_dim == 64  # 8x8: the one size that fits the Linear
    # TorchScript: a scripted Sequential and a traced class of modules called in order
    s = cnn_sequential()
    torch.jit.save(torch.jit.script(s), tmp_path / "cnn_script.pt")
    net = load_network(str(tmp_path / "cnn_script.pt"))  # TorchScript keeps the input_shape attribute
    assert net.hidden_widths == [256, 64, 6]
    _check_forward_and_patterns(net, s, (1, 8, 8))
    torch.manual_seed(5)
    c = _randomise_bn(Conv1dNet(), 5)
    torch.jit.save(torch.jit.trace(c, torch.zeros(1, 2, 8)), tmp_path / "c1d.pt")
    net = load_network(str(tmp_path / "c1d.pt"))  # length 8: the one that fits the Linear
    assert net.input_dim == 16 and net.hidden_widths == [24, 6]
    _check_forward_and_patterns(net, c, (2, 8))
    _plane_check(tmp_path, tmp_path / "c1d.pt", c, (2, 8), "c1d", scale=3.0)


def test_onnx_export_of_a_cnn_with_softmax(tmp_path):
    pytest.importorskip("onnx")
    m = cnn_sequential()
    try:
        torch.onnx.export(m, torch.zeros(1, 1, 8, 8), str(tmp_path / "cnn.onnx"), dynamo=False)
    except Exception as exc:  # the exporter needs extras in some torch versions
        pytest.skip(f"torch.onnx.export unavailable ({type(exc).__name__})")
    net = load_network(str(tmp_path / "cnn.onnx"))
    assert "dropped trailing Softmax" in net.meta["notes"][0]
    _check_forward_and_patterns(net, m, (1, 8, 8))


def _onnx_mlp(path, act_nodes, tail=(), opset=17, inits_extra=None):
    """x (1, 3) -> Gemm -> activation -> Gemm -> tail; weights from a seeded numpy generator."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(11)
    W0, b0 = rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=6).astype(np.float32) * 0.3
    W1, b1 = rng.normal(size=(2, 6)).astype(np.float32), rng.normal(size=2).astype(np.float32)
    inits = {"W0": W0, "b0": b0, "W1": W1, "b1": b1, **(inits_extra or {})}
    nodes = [helper.make_node("Gemm", ["x", "W0", "b0"], ["h"], transB=1)] + list(act_nodes) + [
        helper.make_node("Gemm", ["a", "W1", "b1"], ["y0"], transB=1)] + list(tail)
    last = tail[-1].output[0] if tail else "y0"
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                          [helper.make_tensor_value_info(last, TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return W0.astype(np.float64), b0.astype(np.float64), W1.astype(np.float64), b1.astype(np.float64)


def test_onnx_clip_as_relu_and_trailing_ops(tmp_path):
    from onnx import helper

    zero = {"zero": np.array(0, np.float32), "inf": np.array(np.inf, np.float32)}
    cases = {
        "clip_inputs.onnx": ([helper.make_node("Clip", ["h", "zero"], ["a"])],
                             [helper.make_node("LogSoftmax", ["y0"], ["y"])], 17),
        "clip_inf.onnx": ([helper.make_node("Clip", ["h", "zero", "inf"], ["a"])],
                          [helper.make_node("ArgMax", ["y0"], ["y"], axis=1)], 17),
        "clip_attr.onnx": ([helper.make_node("Clip", ["h"], ["a"], min=0.0)], [], 6),
    }
    X = np.random.default_rng(12).normal(size=(300, 3))
    for name, (act, tail, opset) in cases.items():
        W0, b0, W1, b1 = _onnx_mlp(tmp_path / name, act, tail, opset, zero if opset >= 11 else None)
        net = load_network(str(tmp_path / name))
        H = X @ W0.T + b0
        ref = np.maximum(H, 0) @ W1.T + b1
        assert np.array_equal(net.patterns(X), H > 0), name
        assert np.abs(net.forward(X) - ref).max() <= 1e-9 * max(1, np.abs(ref).max()), name
        assert bool(tail) == ("notes" in net.meta), name
    # the whole path once: run on a box, verify, stderr note
    p = run_cli(["run", tmp_path / "clip_inputs.onnx", "-o", tmp_path / "clip.h5", "--box", "-2", "2"], check=True)
    assert "note: dropped trailing LogSoftmax: it does not change the activation regions" in p.stderr
    assert run_cli(["verify", tmp_path / "clip.h5", tmp_path / "clip_inputs.onnx", "--samples", "2000"]).returncode == 0
    res = read_result(tmp_path / "clip.h5")
    S = np.random.default_rng(13).uniform(-2, 2, (10_000, 3))
    assert pattern_set(((S @ W0.T + b0) > 0).astype(np.uint8)) <= pattern_set(res.bits)


def _one_line_exit2(p, *needles):
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2, p.stderr
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    for s in needles:
        assert s in lines[0], lines[0]
    return lines[0]


def test_refused_layers_one_line_exit_2(tmp_path):
    from onnx import helper

    _onnx_mlp(tmp_path / "relu6.onnx", [helper.make_node("Clip", ["h", "zero", "six"], ["a"])],
              inits_extra={"zero": np.array(0, np.float32), "six": np.array(6, np.float32)})
    _onnx_mlp(tmp_path / "clipneg.onnx", [helper.make_node("Clip", ["h", "lo"], ["a"])],
              inits_extra={"lo": np.array(-1, np.float32)})
    _onnx_mlp(tmp_path / "midsoftmax.onnx", [helper.make_node("Softmax", ["h"], ["a"])])
    torch.save(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Sigmoid(), nn.Flatten(), nn.Linear(18, 2)),
               tmp_path / "sigmoid.pt")  # (MaxPool is read since max units; a Sigmoid is not)
    torch.save(nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(), nn.Linear(4, 2)), tmp_path / "leaky.pt")
    torch.save(nn.Sequential(nn.Linear(3, 4), nn.PReLU(), nn.Linear(4, 2)), tmp_path / "prelu.pt")
    torch.save(nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=1), nn.Linear(4, 2)), tmp_path / "midsm.pt")
    want = {"relu6.onnx": ("relu6.onnx", "Clip", "max = 6", "not a ReLU"),
            "clipneg.onnx": ("Clip", "min = -1", "not a ReLU"),
            "midsoftmax.onnx": ("Softmax", "end of the graph"),
            "sigmoid.pt": ("sigmoid.pt", "'Sigmoid'", "not supported yet"),
            "midsm.pt": ("Softmax", "last operation")}
    for name, needles in want.items():
        if name in ("relu6.onnx", "sigmoid.pt"):  # the command line: exit 2, one line, no result
            _one_line_exit2(run_cli(["run", tmp_path / name, "-o", tmp_path / "x.h5"]), *needles)
            continue
        with pytest.raises(InputError) as exc:
            load_network(str(tmp_path / name))
        assert "\n" not in str(exc.value) and all(s in str(exc.value) for s in needles), str(exc.value)
    assert not (tmp_path / "x.h5").exists()
    # LeakyReLU and PReLU load now (the network IR's slopes): the same outputs as the module
    X = torch.randn(20, 3, dtype=torch.float64)
    for name in ("leaky.pt", "prelu.pt"):
        m = torch.load(tmp_path / name, weights_only=False).double().eval()
        net = load_network(str(tmp_path / name))
        assert net.hidden_widths == [4] and not net.is_relu
        np.testing.assert_allclose(net.forward(X.numpy()), m(X).detach().numpy(), rtol=1e-9, atol=1e-12)


def test_residual_loads_and_unreadable_torchscript_refused():
    from mpi_enum.loaders.pytorch import network_from_module

    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.b(x + torch.relu(self.a(x)))

    net = network_from_module(Res())  # traced: x passes the ReLU as linear neurons
    assert net.hidden_widths == [4] and net.layer_widths == [8]
    X = torch.randn(30, 4, dtype=torch.float64)
    m = Res().double()
    net = network_from_module(m)
    np.testing.assert_allclose(net.forward(X.numpy()), m(X).detach().numpy(), rtol=1e-9, atol=1e-12)
    with pytest.raises(InputError, match="does more than chain its submodules"):
        network_from_module(torch.jit.script(Res()))


def test_unimportable_pickled_class_is_one_whole_line(tmp_path):
    src = tmp_path / "usermodels.py"
    src.write_text("import torch\nclass Net(torch.nn.Sequential):\n    pass\n")
    import importlib
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        usermodels = importlib.import_module("usermodels")
        torch.save(usermodels.Net(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)), tmp_path / "user.pt")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("usermodels", None)
    p = run_cli(["run", tmp_path / "user.pt", "-o", tmp_path / "u.h5"])  # usermodels is not on the path
    line = _one_line_exit2(p, "user.pt", "'usermodels'", "not importable", "PYTHONPATH", "torch.jit")
    assert line.endswith(")")
    # once the module is importable the same file loads (the class is a Sequential subclass)
    sys.path.insert(0, str(tmp_path))
    try:
        assert load_network(str(tmp_path / "user.pt")).hidden_widths == [3]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("usermodels", None)


# ----------------------------------------------------------------------------- --input-box

@pytest.fixture
def plain_npz(tmp_path):
    rng = np.random.default_rng(21)
    arrs = {"W0": rng.normal(size=(6, 3)), "b0": rng.normal(size=6) * 0.3,
            "W1": rng.normal(size=(4, 6)), "b1": rng.normal(size=4) * 0.3,
            "W2": rng.normal(size=(1, 4)), "b2": rng.normal(size=1)}
    np.savez(tmp_path / "plain.npz", **arrs)
    return tmp_path / "plain.npz"


def test_input_box_run_ball_and_convert(tmp_path, plain_npz):
    out = tmp_path / "ib.h5"
    run_cli(["run", plain_npz, "-o", out, "--input-box", "0", "0.5,1,2"], check=True)
    dom = json.loads(read_result(out).attrs["domain"])
    assert dom["kind"] == "box" and dom["source"] == "--input-box"
    assert dom["lo"] == [0, 0, 0] and dom["hi"] == [0.5, 1, 2]
    assert dom["input_box"] == {"lo": [0, 0, 0], "hi": [0.5, 1, 2]}
    assert run_cli(["verify", out, plain_npz, "--samples", "2000"]).returncode == 0
    np.save(tmp_path / "c.npy", np.array([0.45, 0.5, 0.5]))
    run_cli(["run", plain_npz, "-o", tmp_path / "ball.h5", "--ball", tmp_path / "c.npy", "0.2",
             "--input-box", "0", "0.5"], check=True)
    dom = json.loads(read_result(tmp_path / "ball.h5").attrs["domain"])
    assert dom["kind"] == "ball" and np.allclose(dom["lo"], [0.25, 0.3, 0.3]) and np.allclose(dom["hi"], 0.5)
    assert dom["input_box"]["hi"] == [0.5, 0.5, 0.5]
    run_cli(["convert", plain_npz, "-o", tmp_path / "boxed.npz", "--input-box", "-1,0,0", "1,2,3"], check=True)
    z = np.load(tmp_path / "boxed.npz")
    assert z["input_lo"].tolist() == [-1, 0, 0] and z["input_hi"].tolist() == [1, 2, 3]
    net = load_network(str(tmp_path / "boxed.npz"))
    assert net.default_box()[1].tolist() == [1, 2, 3]


@pytest.mark.parametrize("lo_hi, needle", [
    (("1", "0"), "LO >= HI in coordinate 0"),
    (("0,0", "1,1"), "expected 1 or 3 values"),
    (("0", "inf"), "finite"),
    (("nan", "1"), "finite"),
    (("0", "x"), "not a number"),
])
def test_input_box_errors(tmp_path, plain_npz, lo_hi, needle):
    cmds = [["run", plain_npz, "-o", tmp_path / "e.h5"]]
    if lo_hi == ("1", "0"):
        cmds.append(["convert", plain_npz, "-o", tmp_path / "e.npz"])
    for cmd in cmds:
        p = run_cli(cmd + ["--input-box", *lo_hi])
        _one_line_exit2(p, "--input-box", needle)
    assert not (tmp_path / "e.h5").exists() and not (tmp_path / "e.npz").exists()
