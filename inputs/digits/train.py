#!/usr/bin/env python3
"""Worked study: a small ReLU MLP on scikit-learn's 8x8 digits, in 4 PCA coordinates.

    python inputs/digits/train.py [--outdir inputs/digits] [--seed 0]

Writes (into --outdir):

* ``digits_mlp.npz``  the network 4 -> 12 -> 12 -> 10 (arrays W0, b0, W1, b1, W2, b2, with
  W of shape (out, in)) and ``input_lo``/``input_hi``: the bounding box of the PCA coordinates of
  all 1797 images, so ``mpi-enum run digits_mlp.npz`` enumerates over the data's box.
* ``plane.npy``  (3, 4): the PCA coordinates of three digit images (the first 0, 1 and 7 of the
  data set), for ``mpi-enum run digits_mlp.npz --plane plane.npy``.
* ``digits_pca.npz``  the PCA (``mean`` (64,), ``components`` (4, 64)) to map between pixels and
  inputs: ``z = components @ (pixels - mean)``, ``pixels ~ mean + components.T @ z``.
* ``train_info.json``  accuracies and the settings used.

Needs numpy and scikit-learn.  Deterministic for a given seed and scikit-learn version; the
committed outputs were made with the versions recorded in train_info.json.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from sklearn_mlp import export_mlp, fit_mlp  # noqa: E402  (inputs/sklearn_mlp.py)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--outdir", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pca", type=int, default=4, help="input dimension (PCA components)")
    ap.add_argument("--hidden", default="12,12", help="hidden widths, comma separated")
    args = ap.parse_args(argv)
    try:
        import sklearn
        from sklearn.datasets import load_digits
        from sklearn.decomposition import PCA
        from sklearn.model_selection import train_test_split
    except ImportError:
        sys.exit("train.py needs scikit-learn: pip install scikit-learn")

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=args.seed, stratify=y)
    pca = PCA(n_components=args.pca, random_state=args.seed).fit(Xtr)
    # scale the PCA coordinates to unit standard deviation on the training set
    sd = np.sqrt(pca.explained_variance_)
    comp = pca.components_ / sd[:, None]

    def z_of(A):
        return (A - pca.mean_) @ comp.T

    Ztr, Zte, Zall = z_of(Xtr), z_of(Xte), z_of(X)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    clf = fit_mlp(Ztr, ytr, hidden, args.seed, max_iter=2000)
    acc_tr, acc_te = float(clf.score(Ztr, ytr)), float(clf.score(Zte, yte))
    arrs = export_mlp(clf, Zall.min(axis=0), Zall.max(axis=0), Zte)
    os.makedirs(args.outdir, exist_ok=True)
    np.savez(os.path.join(args.outdir, "digits_mlp.npz"), **arrs)

    picks = [int(np.flatnonzero(y == c)[0]) for c in (0, 1, 7)]
    np.save(os.path.join(args.outdir, "plane.npy"), Zall[picks])
    np.savez(os.path.join(args.outdir, "digits_pca.npz"), mean=pca.mean_, components=comp,
             plane_indices=np.array(picks))
    info = {"train_accuracy": acc_tr, "test_accuracy": acc_te, "hidden": list(hidden), "pca": args.pca,
            "seed": args.seed, "n_iter": int(clf.n_iter_), "plane_image_indices": picks,
            "plane_labels": [0, 1, 7], "sklearn": sklearn.__version__, "numpy": np.__version__,
            "input_lo": arrs["input_lo"].round(4).tolist(), "input_hi": arrs["input_hi"].round(4).tolist()}
    with open(os.path.join(args.outdir, "train_info.json"), "w") as fh:
        json.dump(info, fh, indent=1)
    print(f"digits MLP {args.pca} -> {' -> '.join(map(str, hidden))} -> 10: train accuracy {acc_tr:.3f}, "
          f"test accuracy {acc_te:.3f} ({clf.n_iter_} iterations)")
    print(f"wrote {args.outdir}/digits_mlp.npz, plane.npy, digits_pca.npz, train_info.json")


if __name__ == "__main__":
    main()
