"""PyTorch networks (``.pt``/``.pth``; needs ``torch``, optional).

A pickled ``torch.nn.Sequential`` (possibly nested) or a TorchScript archive of one, made of
``Linear``, ``ReLU``, ``Flatten``, ``Identity``, ``Dropout`` and ``BatchNorm1d`` (eval mode);
or a ``state_dict`` whose entries are 2-D ``*.weight`` / 1-D ``*.bias`` pairs, read as
Linear-ReLU-...-Linear.  Loading a pickled model executes its pickle: only load files you trust
(TorchScript archives and state_dicts are read without running arbitrary code).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ._builder import Builder as _Builder


def _pickle_problem(exc) -> str:
    """What a failed full unpickling says, whole (never cut in the middle of a name or path)."""
    import re

    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    m = re.search(r"Can't get attribute '([^']+)' on <module '([^']+)'", first)
    if m is None and isinstance(exc, ModuleNotFoundError):
        m = re.search(r"No module named '([^']+)'", first)
        if m is not None:
            return (f"pickle: it needs the module {m.group(1)!r}, which is not importable here; save a "
                    f"torch.nn.Sequential of Linear/ReLU layers, a TorchScript module or a state_dict instead")
    if m is not None:
        return (f"pickle: it holds an instance of the custom class {m.group(1)!r} of module {m.group(2)!r}, which is "
                f"not importable here; save a torch.nn.Sequential of Linear/ReLU layers, a TorchScript module "
                f"(torch.jit.script) or a state_dict instead")
    if len(first) > 300:
        first = first[:300].rsplit(" ", 1)[0] + " ..."
    return f"pickle: {type(exc).__name__}" + (f": {first}" if first else "")


def load_torch(path):
    try:
        import torch
    except ImportError:
        raise InputError(f"{path}: reading .pt/.pth files needs PyTorch (pip install torch), "
                         "or export the model to .onnx") from None
    import warnings
    import zipfile

    obj = None
    errors = []
    try:
        with zipfile.ZipFile(path) as z:
            scripted = any(n.split("/")[1:2] == ["code"] for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        scripted = False  # legacy (non-zip) torch.save format
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices
        if scripted:
            try:
                obj = torch.jit.load(path, map_location="cpu")
            except Exception as exc:
                errors.append(f"TorchScript: {type(exc).__name__}")
        if obj is None:
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:
                errors.append(f"weights_only: {type(exc).__name__}")
        if obj is None:
            try:
                obj = torch.load(path, map_location="cpu", weights_only=False)
            except Exception as exc:
                errors.append(_pickle_problem(exc))
    if obj is None:
        raise InputError(f"{path}: not a readable PyTorch model ({'; '.join(errors)})")
    if isinstance(obj, dict):
        return _torch_state_dict(obj, path)
    if not isinstance(obj, torch.nn.Module):
        raise InputError(f"{path}: holds a {type(obj).__name__}, not a torch.nn.Module or a state_dict")
    return _torch_module(obj, path)


def network_from_module(model, name="<torch.nn.Module>"):
    """A :class:`~mpi_enum.model.network.Network` from an in-memory ``torch.nn.Sequential`` (the
    same walker as for files; ``name`` stands for the path in messages).  The module is read in
    eval mode (BatchNorm running statistics, no Dropout) and its training flag is put back."""
    training = bool(getattr(model, "training", False))
    try:
        return _torch_module(model, name)
    finally:
        if training and hasattr(model, "train"):
            model.train(True)


def _tname(m):
    return getattr(m, "original_name", None) or type(m).__name__


def _leaves(m, path):
    name = _tname(m)
    if name == "Sequential" or name == "ModuleList":
        for ch in m.children():
            yield from _leaves(ch, path)
    else:
        yield m


def _np(t):
    return t.detach().cpu().to(dtype=__import__("torch").float64).numpy().copy()


def _torch_module(model, path):
    model.eval()
    if _tname(model) != "Sequential":
        raise InputError(f"{path}: the model is a {_tname(model)}, not a torch.nn.Sequential; wrap its layers in "
                         "nn.Sequential or export it to .onnx")
    builder = _Builder(path)
    A = c = None  # pending affine map (None: identity)
    after_relu = False
    for m in _leaves(model, path):
        t = _tname(m)
        if t == "Linear":
            W = _np(m.weight)
            b = _np(m.bias) if getattr(m, "bias", None) is not None else np.zeros(W.shape[0])
            if A is None:
                A, c = W, b
            else:
                if A.shape[0] != W.shape[1]:
                    raise InputError(f"{path}: Linear layer takes {W.shape[1]} inputs but the previous layer has "
                                     f"{A.shape[0]} outputs")
                A, c = W @ A, W @ c + b
            after_relu = False
        elif t == "ReLU":
            if after_relu:
                continue
            if A is None:
                raise InputError(f"{path}: a ReLU before the first Linear layer is not supported")
            builder.layers.append((A, c))
            A = c = None
            after_relu = True
        elif t in ("Flatten", "Identity", "Dropout"):
            continue
        elif t == "BatchNorm1d":
            s, t0 = _batchnorm_affine(m, path)
            if A is None:
                A, c = np.diag(s), t0
            else:
                A, c = s[:, None] * A, s * c + t0
            after_relu = False
        else:
            raise InputError(f"{path}: unsupported PyTorch module {t!r}; supported: Linear, ReLU, Flatten, Identity, "
                             "Dropout, BatchNorm1d (export other models to .onnx)")
    if A is None and not after_relu:
        raise InputError(f"{path}: the model has no Linear layer")
    if A is None:
        # ends with ReLU: the output layer is the identity after it
        m = builder.layers[-1][0].shape[0]
        return builder.finish(np.eye(m), np.zeros(m), {"format": "torch", "output_relu": True})
    return builder.finish(A, c, {"format": "torch"})


def _batchnorm_affine(m, path):
    """BatchNorm1d in eval mode as ``y = s * x + t`` (per feature)."""
    import torch

    rm, rv = _np(m.running_mean), _np(m.running_var)
    try:
        eps = float(m.eps)
    except (AttributeError, RuntimeError):
        eps = None  # TorchScript inlines eps: evaluate the module instead
    if eps is not None:
        w = _np(m.weight) if getattr(m, "weight", None) is not None else np.ones_like(rm)
        bb = _np(m.bias) if getattr(m, "bias", None) is not None else np.zeros_like(rm)
        s = w / np.sqrt(rv + eps)
        return s, bb - rm * s
    C = rm.shape[0]
    dtype = m.running_mean.dtype
    try:
        with torch.no_grad():
            t = m(torch.zeros(1, C, dtype=dtype)).double().numpy()[0]
            s = m(torch.ones(1, C, dtype=dtype)).double().numpy()[0] - t
    except Exception as exc:
        raise InputError(f"{path}: cannot evaluate a BatchNorm1d module ({type(exc).__name__})") from None
    return s, t


def _torch_state_dict(sd, path):
    if "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    items = [(k, v) for k, v in sd.items() if hasattr(v, "shape")]
    Ws, bs = [], []
    names = {k for k, _ in items}
    for k, v in items:
        if k.endswith(".weight"):
            if len(v.shape) != 2:
                raise InputError(f"{path}: state_dict entry {k!r} has shape {tuple(v.shape)}; only Linear layers "
                                 "(2-D weights) can be read from a state_dict, save the whole nn.Sequential instead")
            Ws.append(_np(v))
            bk = k[: -len(".weight")] + ".bias"
            bs.append(_np(sd[bk]) if bk in names else np.zeros(v.shape[0]))
        elif k.endswith(".bias"):
            continue
        elif k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            raise InputError(f"{path}: state_dict entry {k!r}: BatchNorm cannot be read from a state_dict; "
                             "save the whole nn.Sequential instead")
    if len(Ws) < 2:
        raise InputError(f"{path}: the state_dict holds {len(Ws)} Linear weight(s); need at least 2 "
                         "(read as Linear-ReLU-...-Linear)")
    from ..model.network import Network

    return Network(Ws, bs, source=path, meta={"format": "torch-state_dict"})
