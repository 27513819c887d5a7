"""``.npz`` networks (CONTRACT §1): arrays ``W0, b0, ..., WL, bL``, optional ``input_lo``/``input_hi``.

Extension (the network IR, :mod:`mpi_enum.model.network`): optional ``slope0, ..., slope{L-1}``
(the slope of each hidden neuron below 0: LeakyReLU/PReLU; 0 = ReLU) and ``linear0, ...``
(booleans: neurons without activation, no pattern bit) and ``group0, ...`` (integers: each
neuron's max group, -1 none; a group's members are one contiguous run, a max unit's candidates:
each outputs its pre-activation where it is the group's first maximum, else 0).  A layer without
its array is all ReLU.
"""
from __future__ import annotations

import zipfile

import numpy as np

from ..errors import InputError
from ..model.network import Network


def load_npz(path: str) -> Network:
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            n_layers = 0
            while f"W{n_layers}" in files:
                n_layers += 1
            if n_layers == 0:
                raise InputError(f"{path}: no arrays W0, b0, ... found (keys: {sorted(files)[:8]})")
            stray = sorted(k for k in files if k[:1] in "Wb" and k[1:].isdigit() and int(k[1:]) >= n_layers)
            if stray:  # e.g. W0, W1, W3: silently dropping W3 would enumerate a different network
                raise InputError(f"{path}: {stray[0]} is given but W{n_layers} is missing (layers must be W0, b0, W1, b1, ...)")
            Ws, bs = [], []
            for i in range(n_layers):
                if f"b{i}" not in files:
                    raise InputError(f"{path}: W{i} has no matching b{i}")
                Ws.append(np.array(z[f"W{i}"]))
                bs.append(np.array(z[f"b{i}"]))
            slopes = linear = groups = None
            n_hid = n_layers - 1
            blank = {"slope": lambda w: np.zeros(w), "linear": lambda w: np.zeros(w, bool),
                     "group": lambda w: np.full(w, -1, np.int64)}
            for key in ("slope", "linear", "group"):
                given = [f"{key}{i}" in files for i in range(n_hid)]
                stray = sorted(k for k in files if k.startswith(key) and k[len(key):].isdigit()
                               and int(k[len(key):]) >= n_hid)
                if stray:
                    raise InputError(f"{path}: {stray[0]} is given but the network has {n_hid} hidden layers")
                if any(given):
                    arrs = [np.array(z[f"{key}{i}"]) if g else None for i, g in enumerate(given)]
                    arrs = [a if a is not None else blank[key](len(bs[i])) for i, a in enumerate(arrs)]
                    if key == "slope":
                        slopes = arrs
                    elif key == "linear":
                        linear = arrs
                    else:
                        groups = arrs
            lo = np.array(z["input_lo"]) if "input_lo" in files else None
            hi = np.array(z["input_hi"]) if "input_hi" in files else None
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a readable .npz network ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'corrupt'})") from None
    except Exception as exc:  # zlib.error, struct.error, ... from truncated archives
        raise InputError(f"{path}: not a readable .npz network ({type(exc).__name__})") from None
    return Network(Ws, bs, lo, hi, source=path, slopes=slopes, linear=linear, groups=groups)
