"""``mpi-enum convert MODEL -o NET.npz [--force]``: any supported network file to ``.npz``.

MODEL may be ``.onnx``, ``.pt``/``.pth`` (needs torch), ``.nnet`` or ``.npz``.  The output holds
``W0, b0, ..., WL, bL`` (W of shape (out, in), CONTRACT §1) exactly as ``mpi-enum run`` would
enumerate the model (ONNX/PyTorch affine operators composed into dense layers, ``.nnet`` input
normalisation folded into the first layer), plus ``input_lo``/``input_hi`` when the model file
has a default box (``.nnet``, ``.npz``) or ``--input-box LO HI`` gives one.  The converted file
enumerates to the same regions as the model file.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from ..errors import InputError


def convert(model_path, out_path, force=False, input_box=None):
    """Write ``model_path`` as an ``.npz`` network; ``input_box`` (``--input-box LO HI``) becomes the
    file's own box (``input_lo``/``input_hi``), replacing the model's.  Returns the Network."""
    from ..loaders import load_network
    from ..loaders.domain_options import set_input_box

    if not out_path.lower().endswith(".npz"):
        raise InputError(f"{out_path}: the output must be an .npz file")
    if os.path.isdir(out_path):
        raise InputError(f"{out_path}: is a directory")
    if os.path.exists(out_path) and not force:
        raise InputError(f"{out_path}: output file exists (use --force to replace it)")
    parent = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(parent):
        raise InputError(f"{out_path}: the directory {parent} does not exist")
    net = set_input_box(load_network(model_path), input_box)
    if os.path.exists(out_path) and os.path.samefile(model_path, out_path):
        raise InputError(f"{out_path}: the output would overwrite the input model")
    arrs = {}
    for i, (W, b) in enumerate(zip(net.weights, net.biases)):
        arrs[f"W{i}"] = np.asarray(W, np.float64)
        arrs[f"b{i}"] = np.asarray(b, np.float64)
    for i in range(len(net.layer_widths)):  # the units beyond ReLU (the network IR's npz arrays)
        if net.slopes is not None:
            arrs[f"slope{i}"] = np.asarray(net.slopes[i], np.float64)
        if net.linear is not None:
            arrs[f"linear{i}"] = np.asarray(net.linear[i], bool)
        if net.groups is not None:
            arrs[f"group{i}"] = np.asarray(net.groups[i], np.int64)
    if net.input_lo is not None:
        arrs["input_lo"] = np.asarray(net.input_lo, np.float64)
        arrs["input_hi"] = np.asarray(net.input_hi, np.float64)
    tmp = out_path + ".tmp.npz"
    try:
        np.savez(tmp, **arrs)
        os.replace(tmp, out_path)
    except PermissionError:
        raise InputError(f"{out_path}: cannot write (permission denied)") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return net


def main(args) -> int:
    out = getattr(args, "output", None) or getattr(args, "o", None)
    if not out:
        raise InputError("convert: -o NET.npz is required")
    # a CLI without --force keeps the old behaviour of overwriting
    force = getattr(args, "force", None)
    net = convert(args.model, out, force=True if force is None else bool(force),
                  input_box=getattr(args, "input_box", None))
    for note in net.meta.get("notes", ()):  # e.g. a dropped trailing Softmax
        print(f"mpi-enum: note: {note}", file=sys.stderr)
    extra = " and the default input box" if net.input_lo is not None else ""
    print(f"wrote {out}: input dim {net.input_dim}, hidden widths {net.hidden_widths}, "
          f"output dim {net.weights[-1].shape[0]}{extra}")
    return 0
