#!/usr/bin/env python3
"""Three small PyTorch classifiers of scikit-learn's 8x8 digits, saved as pickled modules and ONNX.

    python inputs/digits_cnn/train.py [--outdir inputs/digits_cnn] [--seed 0]

The images are scikit-learn's 1797 handwritten 8x8 digits (shipped with scikit-learn, no
download) scaled to [0, 1], input shape (N, 1, 8, 8); the split is the one of
``inputs/digits784/train.py`` (``train_test_split``, test_size 0.25, stratified, random_state =
seed): 1347 train, 450 test images.  The models (``digits_cnn_models.py``):

* ``leaky_mlp``  Flatten -> Linear(64, 24) -> LeakyReLU(0.1) -> Linear(24, 16) -> LeakyReLU(0.1) -> Linear(16, 10)
* ``resnet``     Conv2d(1, 4, 3, p=1) -> ReLU -> 2 x ResBlock (y = relu(x + conv_b(relu(conv_a(x))))) ->
                 AvgPool2d(2) -> Flatten -> Linear(64, 10)
* ``lenet``      Conv2d(1, 6, 3, p=1) -> ReLU -> MaxPool2d(2) -> Conv2d(6, 8, 3, p=1) -> ReLU -> MaxPool2d(2)
                 -> Flatten -> Linear(32, 10)

Writes (into --outdir), for each model ``<name>.pt2`` (``torch.export.save``, batch 1),
``<name>.pt`` (``torch.save`` of the whole eval-mode
float32 module) and ``<name>.onnx`` (classic TorchScript exporter, opset 17, fixed input
"x" of shape (1, 1, 8, 8), output "logits" (1, 10)); also ``plane_017.npy`` (3, 64) float64: the
first test images of classes 0, 1 and 7, flattened, for ``--plane``; and ``train_info.json``
(accuracies, checks, settings, versions).

Checks, each an error when it fails: the reloaded ``.pt`` gives bitwise the outputs of the
trained module; onnxruntime on the ``.onnx`` (one image at a time) agrees with torch on all test
images to < 1e-4 and gives the same test accuracy; ``torch.fx`` traces each model (and sees the
residual adds of ``resnet``).

Needs torch, numpy, scikit-learn, onnx and onnxruntime.  Deterministic for a given seed and
versions: one thread, fixed seeds, ``torch.use_deterministic_algorithms(True)``; the committed
outputs were made with the versions recorded in train_info.json.
"""
import argparse
import hashlib
import json
import operator
import os
import sys
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# per-model training settings: epochs, Adam learning rate, weight decay (batch size 32 for all)
SETTINGS = {"leaky_mlp": (60, 3e-3, 1e-4), "resnet": (60, 3e-3, 1e-4), "lenet": (60, 3e-3, 1e-4)}
BATCH = 32
OPSET = 17


def load_split(seed):
    """(Xtr, ytr, Xte, yte, idx_tr, idx_te): float32 images (N, 1, 8, 8) in [0, 1], int64 labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    X = (d.images / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=0.25, random_state=seed, stratify=y)
    return X[idx_tr], y[idx_tr], X[idx_te], y[idx_te], idx_tr, idx_te


def train(name, Xtr, ytr, seed):
    import torch
    from digits_cnn_models import MODELS

    epochs, lr, wd = SETTINGS[name]
    torch.manual_seed(seed)  # the initial weights
    model = MODELS[name]().float()
    gen = torch.Generator().manual_seed(seed + 1)  # the batch order
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    lossf = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(Xtr), torch.from_numpy(ytr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(yt), generator=gen)
        for i in range(0, len(yt), BATCH):
            b = perm[i:i + BATCH]
            opt.zero_grad()
            lossf(model(Xt[b]), yt[b]).backward()
            opt.step()
    return model.eval()


def torch_logits(model, X):
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(X)).numpy()


def check_fx(name, model):
    """The fx graph's node counts; asserts the residual adds of resnet are visible to fx."""
    import torch
    import torch.fx

    gm = torch.fx.symbolic_trace(model)
    adds = [n for n in gm.graph.nodes if n.op == "call_function" and n.target in (operator.add, torch.add)]
    modules = [n for n in gm.graph.nodes if n.op == "call_module"]
    if name == "resnet":
        assert len(adds) == 2, f"resnet: fx sees {len(adds)} adds, expected 2"
    return {"call_module": len(modules), "add": len(adds)}


def export_onnx(model, path):
    import torch

    # torch >= 2.9 defaults to dynamo=True, which needs the onnxscript package; the classic
    # (TorchScript-based) exporter needs no extra package and writes one self-contained file.
    # (Its DeprecationWarning about the legacy exporter is silenced here.)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), path, input_names=["x"], output_names=["logits"],
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)


def check_onnx(path, X, ref):
    """Max |onnxruntime - torch| over the images X (run one at a time: the batch is fixed at 1)."""
    import onnx
    import onnxruntime as ort

    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    shape = [dd.dim_value for dd in m.graph.input[0].type.tensor_type.shape.dim]
    assert [i.name for i in m.graph.input] == ["x"] and shape == [1, 1, 8, 8], (m.graph.input, shape)
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    out = np.concatenate([sess.run(None, {"x": X[i:i + 1]})[0] for i in range(len(X))])
    return out, float(np.max(np.abs(out - ref))), sorted({n.op_type for n in m.graph.node})


def sha256(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--outdir", default=HERE)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        import onnx
        import onnxruntime
        import sklearn
        import torch
    except ImportError as exc:
        sys.exit(f"train.py needs torch, scikit-learn, onnx and onnxruntime ({exc})")

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    Xtr, ytr, Xte, yte, idx_tr, idx_te = load_split(args.seed)
    os.makedirs(args.outdir, exist_ok=True)
    info = {"seed": args.seed, "n_train": len(ytr), "n_test": len(yte), "batch": BATCH, "optimizer": "Adam",
            "loss": "cross entropy", "input": "(N, 1, 8, 8) float32, load_digits().images / 16",
            "split": "sklearn train_test_split(arange(1797), test_size=0.25, random_state=seed, stratify=y)",
            "onnx_opset": OPSET, "onnx_exporter": "torch.onnx.export(dynamo=False), batch fixed at 1",
            "models": {}}
    for name in SETTINGS:
        model = train(name, Xtr, ytr, args.seed)
        ref_tr, ref = torch_logits(model, Xtr), torch_logits(model, Xte)
        acc_tr = float(np.mean(ref_tr.argmax(1) == ytr))
        acc_te = float(np.mean(ref.argmax(1) == yte))

        pt = os.path.join(args.outdir, f"{name}.pt")
        model.input_shape = (1, 8, 8)  # kept by torch.save: loaders need not guess the input size
        torch.save(model, pt)
        back = torch.load(pt, map_location="cpu", weights_only=False)
        assert not back.training and all(p.dtype == torch.float32 for p in back.parameters())
        assert np.array_equal(torch_logits(back, Xte), ref), f"{name}: reloaded .pt disagrees"

        fx = check_fx(name, back)
        onx = os.path.join(args.outdir, f"{name}.onnx")
        export_onnx(back, onx)
        out, diff, ops = check_onnx(onx, Xte, ref)
        pt2 = os.path.join(args.outdir, f"{name}.pt2")  # torch.export of the same module, batch 1
        torch.export.save(torch.export.export(back, (torch.zeros(1, 1, 8, 8),)), pt2)
        ep = torch.export.load(pt2).module()
        with torch.no_grad():
            out2 = np.concatenate([ep(torch.as_tensor(x[None])).numpy() for x in Xte[:50]])
        assert np.allclose(out2, ref[:50], rtol=1e-5, atol=1e-5), f"{name}: the torch.export program disagrees"
        acc_onnx = float(np.mean(out.argmax(1) == yte))
        n_disagree = int(np.sum(out.argmax(1) != ref.argmax(1)))
        assert diff < 1e-4, f"{name}: onnxruntime differs from torch by {diff}"
        assert acc_onnx == acc_te, f"{name}: onnx accuracy {acc_onnx} != torch accuracy {acc_te}"

        epochs, lr, wd = SETTINGS[name]
        info["models"][name] = {
            "train_accuracy": acc_tr, "test_accuracy": acc_te, "onnx_test_accuracy": acc_onnx,
            "onnx_max_abs_diff": diff, "onnx_argmax_disagreements": n_disagree, "onnx_ops": ops,
            "epochs": epochs, "lr": lr, "weight_decay": wd,
            "n_params": int(sum(p.numel() for p in back.parameters())), "fx_nodes": fx,
            "modules": [f"{n or '(root)'}: {type(m).__name__}" for n, m in back.named_modules()],
            "sha256": {f"{name}.pt": sha256(pt), f"{name}.onnx": sha256(onx)},
            "bytes": {f"{name}.pt": os.path.getsize(pt), f"{name}.onnx": os.path.getsize(onx)}}
        print(f"{name}: train accuracy {acc_tr:.4f}, test accuracy {acc_te:.4f}; onnxruntime test accuracy "
              f"{acc_onnx:.4f}, max |onnx - torch| = {diff:.3g} ({n_disagree} argmax disagreements); "
              f"{os.path.getsize(pt)} B .pt, {os.path.getsize(onx)} B .onnx")

    picks = [int(np.flatnonzero(yte == c)[0]) for c in (0, 1, 7)]
    plane = Xte[picks].reshape(3, 64).astype(np.float64)
    assert plane.min() >= 0.0 and plane.max() <= 1.0
    np.save(os.path.join(args.outdir, "plane_017.npy"), plane)
    info["plane_017"] = {"labels": [0, 1, 7], "test_positions": picks,
                         "dataset_indices": [int(idx_te[i]) for i in picks],
                         "sha256": sha256(os.path.join(args.outdir, "plane_017.npy"))}
    info["versions"] = {"torch": torch.__version__, "numpy": np.__version__, "sklearn": sklearn.__version__,
                        "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                        "python": sys.version.split()[0]}
    with open(os.path.join(args.outdir, "train_info.json"), "w") as fh:
        json.dump(info, fh, indent=1)
        fh.write("\n")
    print(f"plane_017.npy: test images {picks} (data set indices {info['plane_017']['dataset_indices']})")
    print(f"wrote {args.outdir}/{{leaky_mlp,resnet,lenet}}.{{pt,onnx}}, plane_017.npy, train_info.json")


if __name__ == "__main__":
    main()
