"""The trained models of ``inputs/digits_cnn`` (a LeakyReLU MLP, a ResNet-style CNN with two
residual blocks and a LeNet with two MaxPool2d), read from their ``.pt``, ``.pt2`` and ``.onnx``
files and enumerated on the plane through three test digits.  The oracles are the frameworks' own
forward passes: PyTorch forward hooks on the activation and max-pool modules give every pattern
(a pool's bits: torch's own selector, one-hot over its window, :mod:`_pool_oracle`), onnxruntime
the outputs; 10^5 random points of the plane must all land in stored regions, and ``verify``'s
areas must sum to the parallelogram.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

import mpi_enum  # noqa: E402
from _pool_oracle import hook_patterns as _hook_outputs_and_patterns  # noqa: E402
from mpi_enum.loaders import load_network  # noqa: E402

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "inputs", "digits_cnn")
# the activation modules of each model, in execution order (the pattern's layer order)
ACTS = {"leaky_mlp": ["2", "4"], "resnet": ["1", "2.relu_a", "2.relu_out", "3.relu_a", "3.relu_out"],
        "lenet": ["1", "2", "4", "5"]}


def _model(name):
    sys.path.insert(0, HERE)  # resnet.pt pickles digits_cnn_models.ResBlock
    try:
        return torch.load(os.path.join(HERE, f"{name}.pt"), weights_only=False).double().eval()
    finally:
        sys.path.remove(HERE)


def hook_patterns(model, names, X):
    """Pre-activation signs (> 0) of the named activation modules' inputs, flattened in C order;
    for a max-pool module, its selector's one-hot bits (:func:`_pool_oracle.hook_patterns`)."""
    return _hook_outputs_and_patterns(model, names, X, (1, 8, 8))[1]


@pytest.fixture(scope="module")
def loaded():
    nets = {}
    for name in ACTS:
        sys.path.insert(0, HERE)
        try:
            nets[name] = (load_network(os.path.join(HERE, f"{name}.pt")), load_network(os.path.join(HERE, f"{name}.onnx")))
        finally:
            sys.path.remove(HERE)
    return nets


@pytest.mark.parametrize("name", sorted(ACTS))
def test_both_files_read_as_the_frameworks_compute(name, loaded):
    net_pt, net_onnx = loaded[name]
    X = np.random.default_rng(0).uniform(0, 1, size=(200, 64))
    model = _model(name)
    with torch.no_grad():
        ref = model(torch.as_tensor(X).reshape(-1, 1, 8, 8)).numpy()
    for net in (net_pt, net_onnx):
        assert not net.is_relu
        np.testing.assert_allclose(net.forward(X), ref, rtol=1e-9, atol=1e-9)
        np.testing.assert_array_equal(net.patterns(X), hook_patterns(model, ACTS[name], X))
    # the torch.export archive (.pt2, ATen operators, batch 1) reads as the same network
    net_pt2 = load_network(os.path.join(HERE, f"{name}.pt2"))
    np.testing.assert_allclose(net_pt2.forward(X), ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(net_pt2.patterns(X), net_pt.patterns(X))
    assert net_pt2.layer_widths == net_pt.layer_widths
    sess = ort.InferenceSession(os.path.join(HERE, f"{name}.onnx"), providers=["CPUExecutionProvider"])
    out = np.concatenate([sess.run(None, {"x": x.reshape(1, 1, 8, 8).astype(np.float32)})[0] for x in X[:50]])
    np.testing.assert_allclose(net_onnx.forward(X[:50]), out, rtol=1e-4, atol=1e-4)
    if name == "resnet":  # two blocks: their inputs ride along as linear neurons
        assert net_pt.hidden_widths == [256] * 5 and net_pt.layer_widths == [256, 512, 256, 512, 256]


def test_maxpool_lenet_reads_as_max_groups(loaded):
    """Each MaxPool2d(2) is a layer of one max group of 4 per pooled entry (the ReLU outputs of its
    window); the three files give the same network, on the plane's points too."""
    net_pt, net_onnx = loaded["lenet"]
    net_pt2 = load_network(os.path.join(HERE, "lenet.pt2"))
    P = np.load(os.path.join(HERE, "plane_017.npy"))
    st = np.random.default_rng(2).uniform(0, 1, size=(500, 2))
    X = np.vstack([P, P[0] + st[:, :1] * (P[1] - P[0]) + st[:, 1:] * (P[2] - P[0])])
    model = _model("lenet")
    with torch.no_grad():
        ref = model(torch.as_tensor(X).reshape(-1, 1, 8, 8)).numpy()
    pats = hook_patterns(model, ACTS["lenet"], X)
    for net in (net_pt, net_onnx, net_pt2):
        assert net.layer_widths == net.hidden_widths == [384, 384, 128, 128]
        sizes = [np.unique(g[g >= 0], return_counts=True)[1].tolist() for g in net.groups]
        assert sizes == [[], [4] * 96, [], [4] * 32]
        np.testing.assert_allclose(net.forward(X), ref, rtol=1e-9, atol=1e-9)
        np.testing.assert_array_equal(net.patterns(X), pats)


@pytest.mark.parametrize("name,frac", [("leaky_mlp", 1.0), ("resnet", 0.1), ("lenet", 0.2)])
def test_plane_through_three_digits(name, frac, loaded, tmp_path):
    from mpi_enum.post.verify import verify_result

    P = np.load(os.path.join(HERE, "plane_017.npy"))
    P = np.stack([P[0], P[0] + frac * (P[1] - P[0]), P[0] + frac * (P[2] - P[0])])
    plane = str(tmp_path / "plane.npy")
    np.save(plane, P)
    net = loaded[name][1]
    res = mpi_enum.enumerate(net, plane=P)
    assert res.n_regions > 20 and res.complete
    model = _model(name)
    stored = {bytes(r) for r in res.patterns}
    assert len(stored) == res.n_regions
    assert np.array_equal(np.packbits(hook_patterns(model, ACTS[name], res.interior_points), axis=1), res.patterns)
    st = np.random.default_rng(1).uniform(0, 1, size=(100_000, 2))
    X = P[0] + st[:, :1] * (P[1] - P[0]) + st[:, 1:] * (P[2] - P[0])
    S = np.packbits(hook_patterns(model, ACTS[name], X), axis=1)
    assert {bytes(r) for r in np.unique(S, axis=0)} <= stored
    out = str(tmp_path / "out.h5")
    res.save(out)
    onnx_path = os.path.join(HERE, f"{name}.onnx")
    checks = verify_result(out, onnx_path, samples=20000)
    assert not [c for c in checks if c.status == "FAIL"], [c for c in checks if c.status == "FAIL"]
    assert [c.status for c in checks if c.name.startswith("volumes")] == ["PASS"]
