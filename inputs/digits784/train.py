#!/usr/bin/env python3
"""The reference paper's setting on real images: a ReLU MLP 784 -> 12 -> 12 -> 10 on 28x28 digits.

    python inputs/digits784/train.py [--outdir inputs/digits784] [--seed 0] [--hidden 12,12]

The images are scikit-learn's 1797 handwritten 8x8 digits (shipped with scikit-learn, no
download), scaled to [0, 1] and upsampled to 28x28 by bilinear interpolation
(``scipy.ndimage.zoom``, factor 3.5): an EMNIST-like 784-pixel input.  Writes (into --outdir):

* ``digits784_mlp.npz``  the network (arrays W0, b0, W1, b1, W2, b2 with W of shape (out, in))
  and ``input_lo`` = 0, ``input_hi`` = 1: the pixel box [0, 1]^784.
* ``digit.npy``  (784,): the first "3" of the data set, the centre of ``--ball digit.npy R``
  (the L-infinity ball of radius R around it, cut to the pixel box).
* ``plane.npy``  (3, 784): the first 0, 1 and 7 of the data set, for ``--plane plane.npy``.
* ``train_info.json``  accuracies, settings and versions.

Needs numpy, scipy and scikit-learn.  Deterministic for a given seed and scikit-learn version;
the committed outputs were made with the versions recorded in train_info.json.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from sklearn_mlp import export_mlp, fit_mlp  # noqa: E402  (inputs/sklearn_mlp.py)


def images_784():
    """The digits as (1797, 784) pixels in [0, 1], and their labels."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = np.stack([zoom(im / 16.0, 3.5, order=1) for im in d.images])
    return np.clip(imgs, 0.0, 1.0).reshape(len(imgs), 784), d.target


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--outdir", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", default="12,12", help="hidden widths, comma separated")
    args = ap.parse_args(argv)
    try:
        import scipy
        import sklearn
        from sklearn.model_selection import train_test_split
    except ImportError:
        sys.exit("train.py needs scikit-learn and scipy: pip install scikit-learn scipy")

    X, y = images_784()
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=args.seed, stratify=y)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    clf = fit_mlp(Xtr, ytr, hidden, args.seed, max_iter=1000)
    acc_tr, acc_te = float(clf.score(Xtr, ytr)), float(clf.score(Xte, yte))
    arrs = export_mlp(clf, np.zeros(784), np.ones(784), Xte)
    os.makedirs(args.outdir, exist_ok=True)
    np.savez(os.path.join(args.outdir, "digits784_mlp.npz"), **arrs)

    centre = int(np.flatnonzero(y == 3)[0])
    picks = [int(np.flatnonzero(y == c)[0]) for c in (0, 1, 7)]
    np.save(os.path.join(args.outdir, "digit.npy"), X[centre])
    np.save(os.path.join(args.outdir, "plane.npy"), X[picks])
    info = {"train_accuracy": acc_tr, "test_accuracy": acc_te, "hidden": list(hidden), "input": "28x28",
            "upsampling": "scipy.ndimage.zoom(image / 16, 3.5, order=1), clipped to [0, 1]",
            "seed": args.seed, "n_iter": int(clf.n_iter_), "digit_index": centre, "digit_label": 3,
            "plane_image_indices": picks, "plane_labels": [0, 1, 7], "sklearn": sklearn.__version__,
            "scipy": scipy.__version__, "numpy": np.__version__}
    with open(os.path.join(args.outdir, "train_info.json"), "w") as fh:
        json.dump(info, fh, indent=1)
    print(f"digits MLP 784 -> {' -> '.join(map(str, hidden))} -> 10: train accuracy {acc_tr:.3f}, "
          f"test accuracy {acc_te:.3f} ({clf.n_iter_} iterations)")
    print(f"wrote {args.outdir}/digits784_mlp.npz, digit.npy, plane.npy, train_info.json")


if __name__ == "__main__":
    main()
