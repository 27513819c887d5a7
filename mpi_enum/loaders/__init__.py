"""Network loaders (CONTRACT §1): one dispatch by file extension.

Every loader returns a validated :class:`mpi_enum.model.network.Network` or raises
:class:`~mpi_enum.errors.InputError` with a one-line message naming the file.

* :mod:`.npz` (``W0, b0, ...``), :mod:`.nnet` (ACAS Xu), :mod:`.onnx` (needs ``onnx``),
  :mod:`.pytorch` (``.pt``/``.pth``, needs ``torch``), :mod:`.torch_trace` (a ``torch.nn.Module``
  traced into dense layers);
* a loader's remarks for the user (a dropped trailing Softmax) are in ``net.meta["notes"]``: the
  command line prints them on stderr (rank 0);
* :mod:`.domain_options`: the domain from the command-line (or API) options and their files;
* :func:`as_network`: a path, a :class:`~mpi_enum.model.network.Network` or a ``torch.nn.Module``
  (the Python API's ``network`` argument) as a validated Network.

May import: :mod:`mpi_enum.model`, :mod:`mpi_enum.errors`, numpy, and the optional
``onnx``/``torch`` packages (imported lazily).  Never MPI, the engine or the result file.
"""
from __future__ import annotations

import hashlib
import os
import sys

from ..errors import InputError
from ..model.network import Network, validate

__all__ = ["as_network", "load_network", "file_sha256", "weights_sha256"]


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

def weights_sha256(net: Network) -> str:
    """SHA-256 of the layers themselves (shapes and float64 bytes): the identity of a network that
    has no file (an in-memory :class:`Network` or ``torch.nn.Module``)."""
    import numpy as np

    h = hashlib.sha256(b"mpi_enum.network.v1")
    for W, b in zip(net.weights, net.biases):
        for a in (W, b):
            a = np.ascontiguousarray(a, dtype="<f8")
            h.update(repr(a.shape).encode())
            h.update(a.tobytes())
    for name in ("slopes", "linear", "groups"):  # absent for ReLU networks: their hash is unchanged
        arrs = getattr(net, name)
        if arrs is not None:
            h.update(name.encode())
            for a in arrs:
                h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
    return h.hexdigest()


def _is_torch_module(obj) -> bool:
    torch = sys.modules.get("torch")  # a torch module exists only if the caller imported torch
    return torch is not None and isinstance(obj, torch.nn.Module)


def as_network(obj) -> Network:
    """A validated :class:`Network` from a path (any format of :func:`load_network`), a
    :class:`Network` (copied; its ``sha256`` defaults to :func:`weights_sha256`) or a
    ``torch.nn.Module`` (of the layers the ``.pt`` loader reads; the module is not changed)."""
    if isinstance(obj, (str, os.PathLike)):
        return load_network(os.fspath(obj))
    if isinstance(obj, Network):
        name = obj.source or "<Network>"
        net = validate(Network(list(obj.weights), list(obj.biases), obj.input_lo, obj.input_hi, name,
                               obj.sha256, dict(obj.meta), obj.slopes and list(obj.slopes),
                               obj.linear and list(obj.linear), obj.groups and list(obj.groups)), name)
    elif _is_torch_module(obj):
        from .pytorch import network_from_module

        name = f"<torch {type(obj).__name__}>"
        net = validate(network_from_module(obj, name), name)
        net.source = name
    else:
        raise InputError(f"network: expected a file path, an mpi_enum Network or a torch.nn.Module, "
                         f"got {type(obj).__name__}")
    if not net.sha256:
        net.sha256 = weights_sha256(net)
    return net


def load_network(path: str) -> Network:
    """Load and validate a network; the loader is chosen by extension (CONTRACT §1)."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a network file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        from .npz import load_npz

        net = load_npz(path)
    elif ext == ".nnet":
        from .nnet import load_nnet

        net = load_nnet(path)
    elif ext == ".onnx":
        from .onnx import load_onnx  # optional dependency: onnx

        net = load_onnx(path)
    elif ext in (".pt", ".pth", ".pt2"):
        from .pytorch import load_torch  # optional dependency: torch

        net = load_torch(path)
    else:
        raise InputError(f"{path}: unsupported network format {ext!r} (use .npz, .nnet, .onnx, .pt, .pth or .pt2)")
    net = validate(net, path)
    net.source = path
    net.sha256 = file_sha256(path)
    return net
