"""The domain from the command-line or Python API options: one builder for both.

Every option takes either what the command line gives (strings: LO/HI comma lists, paths of
``.npy``/``.npz`` array files) or, from Python, the arrays themselves:

==============  ====================================  ==========================================
option          command line                          Python (``mpi_enum.enumerate``)
==============  ====================================  ==========================================
``box``         ``("LO", "HI")`` scalars/comma lists  ``(lo, hi)``: scalars or arrays (d,)
``polytope``    ``FILE.npz`` with ``A``, ``b``        ``(A, b)``
``ball``        ``("CENTER.npy", "RADIUS")``          ``(center, radius)``
``plane``       ``POINTS.npy`` (3, d)                 ``points`` (3, d)
``line``        ``POINTS.npy`` (2, d)                 ``points`` (2, d)
``unbounded``   flag                                  ``True``
``input_box``   ``("LO", "HI")`` (``--input-box``)    ``(lo, hi)``: the network's default box
==============  ====================================  ==========================================

A path (``str`` or ``os.PathLike``) is read with :func:`numpy.load`; anything else is taken as
array data.  Either way the same checks run and the same
:class:`mpi_enum.model.domain.Domain` comes out (array data is labelled ``--polytope``,
``--plane``, ... in messages and in the domain's description, a file by its path).

May import: :mod:`mpi_enum.model`, :mod:`mpi_enum.errors`, numpy.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import InputError
from ..model.domain import box_domain, line_domain, plane_domain, polytope_domain, unbounded_domain


def _is_path(v):
    return isinstance(v, (str, os.PathLike))


def _vec(value, d, what):
    """A scalar or a vector of length d: a comma-list string (the CLI) or numbers/an array."""
    if isinstance(value, (str, bytes)):
        text = value.decode() if isinstance(value, bytes) else value
        try:
            vals = [float(t) for t in text.split(",") if t.strip() != ""]
        except ValueError:
            raise InputError(f"{what}: not a number or comma list: {text!r}") from None
    else:
        try:
            vals = [float(t) for t in np.asarray(value, dtype=np.float64).reshape(-1)]
        except (TypeError, ValueError):
            raise InputError(f"{what}: not a number or an array of numbers: {value!r}") from None
    if len(vals) == 1:
        vals = vals * d
    if len(vals) != d:
        raise InputError(f"{what}: expected 1 or {d} values (the network's input dimension), got {len(vals)}")
    v = np.array(vals)
    if not np.all(np.isfinite(v)):
        raise InputError(f"{what}: values must be finite")
    return v


def _load_array(path, what):
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file ({what})") from None
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npy/.npz file for {what} ({type(exc).__name__})") from None
    return arr


def _points(value, d, opt, rows):
    """(array, label) of a --plane/--line value: a .npy path or the points themselves."""
    if _is_path(value):
        path = os.fspath(value)
        arr = _load_array(path, opt)
        if hasattr(arr, "files"):
            raise InputError(f"{path}: {opt} needs a .npy array of shape ({rows}, {d})")
        return arr, path
    try:
        return np.asarray(value, dtype=np.float64), opt
    except (TypeError, ValueError):
        raise InputError(f"{opt}: the points must be a numeric array of shape ({rows}, {d})") from None


def _pair(value, opt, names):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise InputError(f"{opt} needs two values ({names})")
    return value[0], value[1]


def _polytope(value, d):
    if _is_path(value):
        path = os.fspath(value)
        arr = _load_array(path, "--polytope")
        if not hasattr(arr, "files") or "A" not in arr.files or "b" not in arr.files:
            raise InputError(f"{path}: --polytope needs an .npz file with arrays A (m, d) and b (m,)")
        return polytope_domain(arr["A"], arr["b"], d, path)
    A, b = _pair(value, "--polytope", "A, b")
    try:
        A, b = np.asarray(A, dtype=np.float64), np.asarray(b, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("--polytope: A and b must be numeric arrays") from None
    return polytope_domain(A, b, d, "--polytope")


def _ball(value, net):
    d = net.input_dim
    center, radius = _pair(value, "--ball", "CENTER, RADIUS")
    if _is_path(center):
        label = os.fspath(center)
        c = _load_array(label, "--ball CENTER")
        if hasattr(c, "files"):
            raise InputError(f"{label}: --ball CENTER must be a .npy array of shape ({d},)")
    else:
        label = "--ball CENTER"
        c = center
    try:
        c = np.asarray(c, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{label}: --ball CENTER must be a finite array of shape ({d},)") from None
    if c.shape != (d,) or not np.all(np.isfinite(c)):
        raise InputError(f"{label}: --ball CENTER must be a finite array of shape ({d},), got {c.shape}")
    try:
        r = float(radius)
    except (TypeError, ValueError):
        raise InputError(f"--ball RADIUS: not a number: {radius!r}") from None
    if not np.isfinite(r) or r <= 0:
        raise InputError(f"--ball RADIUS must be a finite number > 0, got {radius}"
                         + (" (a ball of radius 0 is a single point: it has no interior)" if r == 0 else ""))
    dlo, dhi = net.default_box()
    lo, hi = np.maximum(c - r, dlo), np.minimum(c + r, dhi)
    where = label if label != "--ball CENTER" else "the center"
    if np.any(lo > hi):
        raise InputError(f"--ball: the ball around {where} with radius {r} does not meet the network's default "
                         "box: the domain is empty")
    if np.all(lo == hi):
        raise InputError(f"--ball: the ball around {where} with radius {r} meets the network's default box in a "
                         "single point: the domain has no interior")
    return box_domain(lo, hi, {"kind": "ball", "center": c.tolist(), "radius": r})


def check_input_box(value, d, opt="--input-box"):
    """``--input-box LO HI`` (scalars or comma lists of length d, or arrays): the checked (lo, hi),
    finite with lo < hi in every coordinate.  InputError naming the option otherwise."""
    lo, hi = _pair(value, opt, "LO, HI")
    lo, hi = _vec(lo, d, f"{opt} LO"), _vec(hi, d, f"{opt} HI")
    bad = np.flatnonzero(lo >= hi)
    if bad.size:
        i = int(bad[0])
        raise InputError(f"{opt}: LO >= HI in coordinate {i} ({lo[i]:g} >= {hi[i]:g}); the box needs LO < HI")
    return lo, hi


def set_input_box(net, value):
    """The network with ``--input-box`` as its default box (what ``--ball`` is cut to, and the domain
    when none is given); ``net`` itself is changed (the loaders' fresh copy) and returned."""
    if value is not None:
        net.input_lo, net.input_hi = check_input_box(value, net.input_dim)
        net.meta["input_box"] = True
    return net


def make_domain(net, box=None, polytope=None, ball=None, plane=None, line=None, unbounded=False, input_box=None):
    """Build the domain from the options (at most one may be given; none: the network's box).

    ``input_box`` (``--input-box LO HI``) replaces the network's default box first (see
    :func:`set_input_box`); it is then recorded in the domain's description (``spec["input_box"]``,
    the result file's ``domain`` attribute)."""
    set_input_box(net, input_box)
    dom = _make_domain(net, box, polytope, ball, plane, line, unbounded)
    if input_box is not None:
        dom.spec["input_box"] = {"lo": net.input_lo.tolist(), "hi": net.input_hi.tolist()}
    return dom


def _make_domain(net, box, polytope, ball, plane, line, unbounded):
    d = net.input_dim
    given = [n for n, v in (("--box", box), ("--polytope", polytope), ("--ball", ball), ("--plane", plane),
                            ("--line", line), ("--unbounded", unbounded or None)) if v is not None]
    if len(given) > 1:
        raise InputError(f"give at most one domain option, got {' and '.join(given)}")
    if box is not None:
        lo, hi = _pair(box, "--box", "LO, HI")
        lo = _vec(lo, d, "--box LO")
        hi = _vec(hi, d, "--box HI")
        return box_domain(lo, hi, {"kind": "box", "source": "--box"})
    if polytope is not None:
        return _polytope(polytope, d)
    if ball is not None:
        return _ball(ball, net)
    if plane is not None:
        arr, label = _points(plane, d, "--plane", 3)
        return plane_domain(arr, d, label)
    if line is not None:
        arr, label = _points(line, d, "--line", 2)
        return line_domain(arr, d, label)
    if unbounded:
        return unbounded_domain(d)
    lo, hi = net.default_box()
    source = ("--input-box" if net.meta.get("input_box") else
              "network default" if net.input_lo is not None else "[-1, 1]^d")
    return box_domain(lo, hi, {"kind": "box", "source": source})
