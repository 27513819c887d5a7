"""PyTorch networks (``.pt``/``.pth``; needs ``torch``, optional).

Owns the files: a pickled ``torch.nn.Module`` (``torch.save(model)``; its class must be
importable), a TorchScript archive (``torch.jit.save``), read by :mod:`.torch_trace` (the
layers, activations (ReLU, LeakyReLU, PReLU), max pools and residual adds / concatenations it
accepts are listed there); or a ``state_dict`` whose entries are 2-D ``*.weight`` / 1-D
``*.bias`` pairs, read as Linear-ReLU-...-Linear.  Loading a pickled model executes its
pickle: only load files you trust (TorchScript archives and state_dicts are read without
running arbitrary code).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError


def _pickle_problem(exc) -> str:
    """What a failed full unpickling says, whole (never cut in the middle of a name or path)."""
    import re

    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    m = re.search(r"Can't get attribute '([^']+)' on <module '([^']+)'", first)
    fix = ("(fix: put the folder of the module that defines it on PYTHONPATH, after moving a class defined in a "
           "script run as __main__ into a module of its own; or save the model with "
           "torch.jit.save(torch.jit.script(model)), or export it to .onnx)")
    if m is None and isinstance(exc, ModuleNotFoundError):
        m = re.search(r"No module named '([^']+)'", first)
        if m is not None:
            return f"the pickled model needs the module {m.group(1)!r}, which is not importable here " + fix
    if m is not None:
        return (f"the pickled model is an instance of the class {m.group(1)!r} of module {m.group(2)!r}, which is "
                f"not importable here " + fix)
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

    if path.lower().endswith(".pt2"):
        return _load_exported(torch, path)
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
                problem = _pickle_problem(exc)
                if problem.startswith("the pickled model"):
                    raise InputError(f"{path}: {problem}") from None
                errors.append(problem)
    if obj is None:
        raise InputError(f"{path}: not a readable PyTorch model ({'; '.join(errors)})")
    if isinstance(obj, dict):
        return _torch_state_dict(obj, path)
    if not isinstance(obj, torch.nn.Module):
        raise InputError(f"{path}: holds a {type(obj).__name__}, not a torch.nn.Module or a state_dict")
    from .torch_trace import network_of

    return network_of(obj, path, copy_model=False)


def _load_exported(torch, path):
    """A ``torch.export.save`` archive (``.pt2``): its graph of ATen operators, traced as a module's
    (residual adds included); the input shape is the exported example's."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ep = torch.export.load(path)
            gm = ep.module()
        except Exception as exc:
            raise InputError(f"{path}: not a readable torch.export archive ({type(exc).__name__})") from None
    shapes = [n.meta["val"].shape for n in gm.graph.nodes if n.op == "placeholder" and "val" in n.meta]
    if len(shapes) != 1:
        raise InputError(f"{path}: the exported program must take exactly one input tensor, found {len(shapes)}")
    gm.input_shape = tuple(int(s) for s in shapes[0][1:])  # one sample, no batch axis
    from .torch_trace import network_of

    return network_of(gm, path, copy_model=False)


def network_from_module(model, name="<torch.nn.Module>"):
    """A :class:`~mpi_enum.model.network.Network` from an in-memory ``torch.nn.Module`` (read from a
    float64 copy in eval mode, see :mod:`.torch_trace`; ``name`` stands for the path in messages).
    The caller's module, its dtype and its training flag are not changed."""
    from .torch_trace import network_of

    return network_of(model, name, copy_model=True)


def _np(t):
    return t.detach().cpu().to(dtype=__import__("torch").float64).numpy().copy()


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
