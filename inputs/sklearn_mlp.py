"""Shared by the example trainers (``inputs/*/train.py``): fit a scikit-learn ReLU
``MLPClassifier`` and export it in mpi_enum's ``.npz`` layout (``W0, b0, ...`` with W of shape
(out, in), ``input_lo``/``input_hi``), checked against scikit-learn's own predictions.

Needs numpy and scikit-learn (only to retrain: the committed networks need neither).
"""
import warnings

import numpy as np


def fit_mlp(Xtr, ytr, hidden, seed, max_iter):
    """A ReLU MLPClassifier fitted deterministically (seed); stopping at max_iter is fine."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=tuple(hidden), activation="relu", alpha=1e-3, max_iter=max_iter,
                        random_state=seed, tol=1e-6, n_iter_no_change=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(Xtr, ytr)
    return clf


def export_mlp(clf, input_lo, input_hi, X_check):
    """The network's arrays; asserts that a numpy forward pass of them predicts on X_check
    exactly what scikit-learn predicts."""
    arrs = {}
    for i, (W, b) in enumerate(zip(clf.coefs_, clf.intercepts_)):
        arrs[f"W{i}"] = np.asarray(W, np.float64).T  # sklearn stores (in, out)
        arrs[f"b{i}"] = np.asarray(b, np.float64)
    arrs["input_lo"], arrs["input_hi"] = np.asarray(input_lo, np.float64), np.asarray(input_hi, np.float64)
    h = X_check
    for i in range(len(clf.coefs_)):
        h = h @ arrs[f"W{i}"].T + arrs[f"b{i}"]
        if i < len(clf.coefs_) - 1:
            h = np.maximum(h, 0)
    assert np.array_equal(np.argmax(h, axis=1), clf.predict(X_check)), "exported weights disagree with sklearn"
    return arrs
