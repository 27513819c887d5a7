"""ONNX / PyTorch loaders and mpi-enum convert, against the source frameworks' own forward passes."""
import argparse
import os

import numpy as np
import pytest


from mpi_enum.errors import InputError  # noqa: E402
from mpi_enum.loaders import load_network  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit notices

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx.reference import ReferenceEvaluator
except ImportError:  # the ONNX tests skip themselves; the torch tests still run
    onnx = None

needs_onnx = pytest.mark.skipif(onnx is None, reason="the onnx package is not installed (pip install onnx)")


def _f32(a):
    return np.asarray(a, np.float32)


def _init(name, a):
    return numpy_helper.from_array(np.asarray(a), name)


def _model(nodes, inits, in_shape, out_shape=None, opset=17):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                          [_init(k, v) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(m)
    return m


def _weights(seed=0, sizes=(3, 8, 6, 2)):
    rng = np.random.default_rng(seed)
    Ws = [_f32(rng.normal(size=(sizes[i + 1], sizes[i])) / np.sqrt(sizes[i])) for i in range(len(sizes) - 1)]
    bs = [_f32(rng.normal(size=sizes[i + 1]) * 0.3) for i in range(len(sizes) - 1)]
    return Ws, bs


def _mlp_onnx(Ws, bs, path):
    """Gemm (alpha, beta, transB) -> Relu -> Gemm (transA on a transposed input) -> Relu -> MatMul + Add."""
    W0, W1, W2 = Ws
    b0, b1, b2 = bs
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "W0t", "b0h"], ["g0"], alpha=2.0, beta=0.5),  # 2 f (W0/2)^T + 0.5 (2 b0)
        helper.make_node("Relu", ["g0"], ["r0"]),
        helper.make_node("Transpose", ["r0"], ["r0t"], perm=[1, 0]),
        helper.make_node("Gemm", ["r0t", "W1", "b1"], ["g1"], transA=1, transB=1),
        helper.make_node("Relu", ["g1"], ["r1"]),
        helper.make_node("Identity", ["r1"], ["i1"]),
        helper.make_node("Dropout", ["i1"], ["d1"]),
        helper.make_node("MatMul", ["d1", "W2t"], ["m2"]),
        helper.make_node("Add", ["m2", "b2"], ["y"]),
    ]
    inits = {"W0t": _f32(W0.T / 2), "b0h": _f32(2 * b0), "W1": W1, "b1": b1, "W2t": _f32(W2.T), "b2": b2}
    m = _model(nodes, inits, ["N", W0.shape[1]], ["N", W2.shape[0]])
    onnx.save(m, path)
    return m


def _npz(Ws, bs, path):
    arrs = {}
    for i, (W, b) in enumerate(zip(Ws, bs)):
        arrs[f"W{i}"] = np.asarray(W, np.float64)
        arrs[f"b{i}"] = np.asarray(b, np.float64)
    np.savez(path, **arrs)
    return str(path)


def _pattern_set(net, **dom):
    from mpi_enum.loaders.domain_options import make_domain
    from mpi_enum.model.problem import Problem
    from mpi_enum.engine.search import enumerate_serial

    regions, _ = enumerate_serial(Problem(net, make_domain(net, **dom)))
    return {bytes(b) for b, *_ in regions}


# ----------------------------------------------------------------------------- ONNX

@needs_onnx
def test_onnx_mlp_matches_reference(tmp_path):
    Ws, bs = _weights(0)
    m = _mlp_onnx(Ws, bs, tmp_path / "m.onnx")
    net = load_network(str(tmp_path / "m.onnx"))
    assert net.hidden_widths == [8, 6] and net.input_dim == 3
    X = _f32(np.random.default_rng(1).normal(size=(200, 3)) * 2)
    ref = ReferenceEvaluator(m).run(None, {"x": X})[0]
    assert np.allclose(net.forward(X.astype(np.float64)), ref, rtol=1e-5, atol=1e-5)
    assert len(net.sha256) == 64


@needs_onnx
def test_onnx_conv_batchnorm_pool_matches_reference(tmp_path):
    rng = np.random.default_rng(2)
    inits = {"C": _f32(rng.normal(size=(3, 1, 3, 3))), "Cb": _f32(rng.normal(size=3)),
             "sc": _f32(rng.uniform(0.5, 2, 3)), "bb": _f32(rng.normal(size=3)), "mu": _f32(rng.normal(size=3)),
             "var": _f32(rng.uniform(0.5, 2, 3)), "Wf": _f32(rng.normal(size=(3 * 3 * 3, 4))),
             "shape": np.array([1, -1], np.int64), "s": _f32(0.5)}
    nodes = [
        helper.make_node("Conv", ["x", "C", "Cb"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c", "sc", "bb", "mu", "var"], ["bn"], epsilon=1e-3),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("AveragePool", ["r"], ["ap"], kernel_shape=[2, 2], strides=[1, 1]),
        helper.make_node("Reshape", ["ap", "shape"], ["fl"]),
        helper.make_node("Mul", ["fl", "s"], ["fs"]),
        helper.make_node("MatMul", ["fs", "Wf"], ["y"]),
    ]
    m = _model(nodes, inits, [1, 1, 7, 7], [1, 4])
    onnx.save(m, tmp_path / "c.onnx")
    net = load_network(str(tmp_path / "c.onnx"))
    assert net.input_dim == 49 and net.hidden_widths == [3 * 4 * 4]
    for _ in range(5):
        X = _f32(rng.normal(size=(1, 1, 7, 7)))
        ref = ReferenceEvaluator(m).run(None, {"x": X})[0]
        assert np.allclose(net.forward(X.reshape(1, -1).astype(np.float64)), ref, rtol=1e-4, atol=1e-4)


@needs_onnx
def test_onnx_shape_arithmetic_is_folded(tmp_path):
    """The Shape -> Gather -> Concat -> Reshape flatten that exporters emit."""
    Ws, bs = _weights(3, (4, 5, 2))
    nodes = [
        helper.make_node("Shape", ["x"], ["shp"]),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array([0], np.int64))),
        helper.make_node("Gather", ["shp", "zero"], ["bsz"], axis=0),
        helper.make_node("Constant", [], ["m1"], value=numpy_helper.from_array(np.array([-1], np.int64))),
        helper.make_node("Concat", ["bsz", "m1"], ["ns"], axis=0),
        helper.make_node("Reshape", ["x", "ns"], ["f"]),
        helper.make_node("Gemm", ["f", "W0", "b0"], ["g0"], transB=1),
        helper.make_node("Relu", ["g0"], ["r0"]),
        helper.make_node("Gemm", ["r0", "W1", "b1"], ["y"], transB=1),
    ]
    m = _model(nodes, {"W0": Ws[0], "b0": bs[0], "W1": Ws[1], "b1": bs[1]}, ["N", 2, 2], ["N", 2])
    onnx.save(m, tmp_path / "s.onnx")
    net = load_network(str(tmp_path / "s.onnx"))
    X = _f32(np.random.default_rng(0).normal(size=(1, 2, 2)))
    ref = ReferenceEvaluator(m).run(None, {"x": X})[0]
    assert np.allclose(net.forward(X.reshape(1, -1).astype(np.float64)), ref, atol=1e-5)


@needs_onnx
def test_onnx_unsupported_operator_is_named(tmp_path):
    Ws, bs = _weights(0, (3, 4, 2))
    nodes = [helper.make_node("Gemm", ["x", "W0", "b0"], ["g"], transB=1),
             helper.make_node("Sigmoid", ["g"], ["s"], name="act1"),
             helper.make_node("Gemm", ["s", "W1", "b1"], ["y"], transB=1)]
    onnx.save(_model(nodes, {"W0": Ws[0], "b0": bs[0], "W1": Ws[1], "b1": bs[1]}, ["N", 3], ["N", 2]),
              tmp_path / "sig.onnx")
    with pytest.raises(InputError, match=r"sig\.onnx: unsupported ONNX operator 'Sigmoid' \(node 'act1'\)"):
        load_network(str(tmp_path / "sig.onnx"))


@needs_onnx
def test_onnx_skip_connection_is_read_as_linear_neurons(tmp_path):
    Ws, bs = _weights(0, (3, 3, 3))
    nodes = [helper.make_node("Gemm", ["x", "W0", "b0"], ["g"], transB=1),
             helper.make_node("Relu", ["g"], ["r"]),
             helper.make_node("Gemm", ["r", "W1", "b1"], ["g1"], transB=1),
             helper.make_node("Add", ["g1", "x"], ["y"], name="residual")]
    onnx.save(_model(nodes, {"W0": Ws[0], "b0": bs[0], "W1": Ws[1], "b1": bs[1]}, ["N", 3], ["N", 3]),
              tmp_path / "res.onnx")
    net = load_network(str(tmp_path / "res.onnx"))
    assert net.hidden_widths == [3] and net.layer_widths == [6]  # x rides along as 3 linear neurons
    X = np.random.default_rng(1).normal(size=(25, 3))
    want = np.maximum(X @ Ws[0].T + bs[0], 0) @ Ws[1].T + bs[1] + X
    np.testing.assert_allclose(net.forward(X), want, rtol=1e-9, atol=1e-12)


@needs_onnx
def test_onnx_garbage_file(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"\x00\x01garbage")
    with pytest.raises(InputError, match="bad.onnx"):
        load_network(str(tmp_path / "bad.onnx"))


@needs_onnx
def test_onnx_and_npz_give_the_same_regions(tmp_path):
    Ws, bs = _weights(4, (2, 7, 6, 2))
    _mlp_onnx(Ws, bs, tmp_path / "m.onnx")
    net_onnx = load_network(str(tmp_path / "m.onnx"))
    net_npz = load_network(_npz(Ws, bs, tmp_path / "m.npz"))
    s1, s2 = _pattern_set(net_onnx), _pattern_set(net_npz)
    assert len(s1) > 10 and s1 == s2


@needs_onnx
def test_convert_onnx_to_npz(tmp_path, capsys):
    from mpi_enum.post import convert

    Ws, bs = _weights(5)
    _mlp_onnx(Ws, bs, tmp_path / "m.onnx")
    out = tmp_path / "m.npz"
    assert convert.main(argparse.Namespace(model=str(tmp_path / "m.onnx"), output=str(out), force=False)) == 0
    a, b = load_network(str(tmp_path / "m.onnx")), load_network(str(out))
    assert all(np.array_equal(x, y) for x, y in zip(a.weights + a.biases, b.weights + b.biases))
    with pytest.raises(InputError, match="exists"):
        convert.main(argparse.Namespace(model=str(tmp_path / "m.onnx"), output=str(out), force=False))
    assert convert.main(argparse.Namespace(model=str(tmp_path / "m.onnx"), output=str(out), force=True)) == 0


def test_convert_nnet_keeps_box(tmp_path):
    from mpi_enum.post import convert

    here = os.path.dirname(os.path.abspath(__file__))
    cands = [os.path.join(here, "data", "small_d3.nnet"), os.path.join(here, "..", "inputs", "acasxu_1_1.nnet")]
    cands = [c for c in cands if os.path.exists(c)]
    if not cands:
        pytest.skip("no .nnet file in tests/data or inputs/")
    nnet = cands[0]
    out = tmp_path / "a.npz"
    convert.convert(nnet, str(out))
    a, b = load_network(nnet), load_network(str(out))
    assert np.array_equal(a.input_lo, b.input_lo) and np.array_equal(a.input_hi, b.input_hi)
    X = np.random.default_rng(0).uniform(a.input_lo, a.input_hi, size=(20, a.input_dim))
    assert np.allclose(a.forward(X), b.forward(X), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- PyTorch

def _torch_model(Ws, bs):
    torch = pytest.importorskip("torch", reason="torch is not installed (optional extra: pip install torch)")
    from torch import nn

    lin = []
    for W, b in zip(Ws, bs):
        L = nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():
            L.weight.copy_(torch.tensor(W))
            L.bias.copy_(torch.tensor(b))
        lin.append(L)
    m = nn.Sequential(nn.Flatten(), lin[0], nn.ReLU(), nn.Sequential(lin[1], nn.ReLU(), nn.Dropout(0.2)), lin[2])
    return m.eval()


def test_torch_sequential_and_torchscript(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed (optional extra: pip install torch)")
    Ws, bs = _weights(6)
    m = _torch_model(Ws, bs)
    torch.save(m, tmp_path / "m.pt")
    torch.jit.save(torch.jit.script(m), tmp_path / "ms.pt")
    torch.save(m.state_dict(), tmp_path / "sd.pth")
    X = np.random.default_rng(0).normal(size=(100, 3))
    with torch.no_grad():
        ref = m(torch.tensor(X, dtype=torch.float32)).double().numpy()
    for f in ("m.pt", "ms.pt", "sd.pth"):
        net = load_network(str(tmp_path / f))
        assert net.hidden_widths == [8, 6], f
        assert np.allclose(net.forward(X), ref, rtol=1e-5, atol=1e-5), f


def test_torch_batchnorm_folded(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed (optional extra: pip install torch)")
    from torch import nn

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2)).eval()
    with torch.no_grad():
        m[1].running_mean.normal_()
        m[1].running_var.uniform_(0.5, 2.0)
        m[1].weight.uniform_(0.5, 1.5)
    torch.save(m, tmp_path / "bn.pt")
    torch.jit.save(torch.jit.script(m), tmp_path / "bns.pt")
    X = np.random.default_rng(1).normal(size=(50, 3))
    with torch.no_grad():
        ref = m(torch.tensor(X, dtype=torch.float32)).double().numpy()
    for f in ("bn.pt", "bns.pt"):
        net = load_network(str(tmp_path / f))
        assert np.allclose(net.forward(X), ref, rtol=1e-5, atol=1e-5), f


def test_torch_unsupported_module_is_named(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed (optional extra: pip install torch)")
    from torch import nn

    torch.save(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)), tmp_path / "t.pt")
    with pytest.raises(InputError, match=r"t\.pt: unsupported PyTorch module 'Tanh'"):
        load_network(str(tmp_path / "t.pt"))


def test_torch_onnx_npz_same_regions(tmp_path):
    """A PyTorch model, its ONNX export and its .npz enumerate to the same pattern set."""
    torch = pytest.importorskip("torch", reason="torch is not installed (optional extra: pip install torch)")
    Ws, bs = _weights(7, (2, 7, 6, 2))
    m = _torch_model(Ws, bs)
    torch.save(m, tmp_path / "m.pt")
    nets = {"pt": load_network(str(tmp_path / "m.pt")), "npz": load_network(_npz(Ws, bs, tmp_path / "m.npz"))}
    try:
        if onnx is None:
            raise ImportError("onnx")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(m, torch.zeros(1, 2), str(tmp_path / "exp.onnx"), dynamo=False)
        nets["onnx-export"] = load_network(str(tmp_path / "exp.onnx"))
    except Exception as exc:  # the exporter needs extras in some torch versions
        print(f"torch.onnx.export unavailable ({type(exc).__name__}); using a hand-built ONNX graph")
    if onnx is not None:
        _mlp_onnx(Ws, bs, tmp_path / "m.onnx")
        nets["onnx"] = load_network(str(tmp_path / "m.onnx"))
    sets = {k: _pattern_set(v) for k, v in nets.items()}
    ref = sets["npz"]
    assert len(ref) > 10
    for k, s in sets.items():
        assert s == ref, k
