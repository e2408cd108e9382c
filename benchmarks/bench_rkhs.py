"""Benchmark of RKHSNODEClassifier (thesis II.4) against kernel and neural baselines.

1. Accuracy and fit time on ``load_digits`` and ``load_breast_cancer`` (stratified split, a third held out,
   ``random_state=0``) and MNIST-1D (``mnist1d.data.make_dataset``, generated locally: 4000 train / 1000 test;
   skipped with a message if the package is missing or wants a download), inputs standardised on the training
   part. Models:

   * ``RKHSNODEClassifier`` with its defaults (``device='auto'``: CUDA when present);
   * ``SVC`` (RBF) tuned by ``GridSearchCV`` over ``C`` and ``gamma`` (the time includes the search);
   * ``LogisticRegression`` on ``RBFSampler`` features (same width ``M`` and kernel bandwidth as the NODE);
   * a one-hot ``KernelRidge`` classifier (Gaussian kernel of the NODE's bandwidth, argmax of the outputs);
   * ``MLPClassifier`` (one hidden layer of 256, adam).

2. Scaling: fit time of the default ``RKHSNODEClassifier`` (and of ``SVC()``) against the number of training
   points, on MNIST-1D (or digits when MNIST-1D is unavailable).

Tables are printed and written to ``benchmarks/results/bench_rkhs.{txt,json}``, plots to
``benchmarks/results/bench_rkhs_*.png``.

Run: ``python benchmarks/bench_rkhs.py [--quick] [--device auto|cpu|cuda] [--seed 0]``. ``--quick`` (under 3 minutes
on 2 CPU cores) uses a smaller SVC grid, 1500 MNIST-1D training points and smaller scaling sizes.
"""

import argparse
import json
import os
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.kernel_approximation import RBFSampler
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from skflow import RKHSNODEClassifier
from skflow.rkhs import median_length_scale

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


class OneHotKernelRidgeClassifier:
    """Kernel ridge regression on one-hot targets; the predicted class is the argmax of the outputs."""

    def __init__(self, gamma, alpha=1e-3):
        self.gamma, self.alpha = gamma, alpha

    def fit(self, X, y):
        self.classes_, enc = np.unique(y, return_inverse=True)
        Y = np.eye(len(self.classes_))[enc]
        self.krr_ = KernelRidge(kernel="rbf", gamma=self.gamma, alpha=self.alpha).fit(X, Y)
        return self

    def score(self, X, y):
        return float(np.mean(self.classes_[self.krr_.predict(X).argmax(1)] == y))


def load_mnist1d():
    """MNIST-1D generated locally (no download); None (with a message) when that is not possible."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        print("MNIST-1D skipped: the mnist1d package is not installed.")
        return None
    try:
        args = get_dataset_args()
        data = make_dataset(args)  # procedurally generated from templates shipped with the package
    except Exception as exc:  # pragma: no cover - depends on the package version
        print(f"MNIST-1D skipped: make_dataset failed ({exc!r}); it may need a download, which is not done here.")
        return None
    return data["x"], data["y"], data["x_test"], data["y_test"]


def datasets(quick):
    for name, loader in (("digits", load_digits), ("breast_cancer", load_breast_cancer)):
        X, y = loader(return_X_y=True)
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=1 / 3, stratify=y, random_state=0)
        sc = StandardScaler().fit(Xtr)
        yield name, sc.transform(Xtr), ytr, sc.transform(Xte), yte
    m1d = load_mnist1d()
    if m1d is not None:
        Xtr, ytr, Xte, yte = m1d
        if quick:
            Xtr, ytr = Xtr[:1500], ytr[:1500]
        sc = StandardScaler().fit(Xtr)
        yield "mnist1d", sc.transform(Xtr), ytr, sc.transform(Xte), yte


def models(device, seed, quick, Xtr):
    """name -> factory. Kernel baselines use the NODE's 'auto' bandwidth: gamma = 1 / (2 l^2)."""
    ell = median_length_scale(Xtr)
    gamma_node = 1.0 / (2.0 * ell**2)
    gamma_scale = 1.0 / (Xtr.shape[1] * Xtr.var())
    M = RKHSNODEClassifier().n_features
    if quick:
        grid = {"C": [1.0, 10.0], "gamma": [gamma_scale, gamma_node]}
    else:
        grid = {"C": [0.3, 1.0, 10.0, 100.0], "gamma": [gamma_scale * f for f in (0.25, 0.5, 1.0, 2.0)] + [gamma_node]}
    return {
        "RKHSNODE (defaults)": lambda: RKHSNODEClassifier(device=device, random_state=seed),
        "SVC rbf, GridSearchCV": lambda: GridSearchCV(SVC(), grid, cv=3, n_jobs=1),
        "SVC()": lambda: SVC(),
        f"RBFSampler({M}) + LogReg": lambda: make_pipeline(
            RBFSampler(gamma=gamma_node, n_components=M, random_state=seed), LogisticRegression(max_iter=2000)),
        "one-hot KernelRidge": lambda: OneHotKernelRidgeClassifier(gamma=gamma_node, alpha=1e-3),
        "MLPClassifier(256)": lambda: MLPClassifier(hidden_layer_sizes=(256,), max_iter=300, random_state=seed),
    }


def _sync(device):
    if torch.cuda.is_available() and device in ("auto", "cuda"):
        torch.cuda.synchronize()


def bench_accuracy(device, seed, quick, lines, record):
    lines.append("== accuracy and fit time ==")
    lines.append(f"{'dataset':14s} {'N':>5s} {'model':28s} {'test acc':>8s} {'fit (s)':>8s}  notes")
    for name, Xtr, ytr, Xte, yte in datasets(quick):
        for mname, make in models(device, seed, quick, Xtr).items():
            est = make()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _sync(device)
                t0 = time.perf_counter()
                est.fit(Xtr, ytr)
                _sync(device)
                t = time.perf_counter() - t0
            acc = est.score(Xte, yte)
            notes = ""
            if isinstance(est, RKHSNODEClassifier):
                notes = (f"train risk {est.loss_curve_[-1]:.1e}, {est.n_iter_} epochs, {est.device_.type}, "
                         f"l={est.length_scale_:.2f}")
            elif isinstance(est, GridSearchCV):
                notes = f"best {est.best_params_}"
            lines.append(f"{name:14s} {len(Xtr):5d} {mname:28s} {acc:8.4f} {t:8.2f}  {notes}")
            print(lines[-1], flush=True)
            record.append(dict(section="accuracy", dataset=name, n_train=len(Xtr), model=mname, test_accuracy=acc,
                               fit_time=t, notes=notes))


def bench_scaling(device, seed, quick, lines, record):
    lines.append("")
    lines.append("== scaling: fit time vs N (default RKHSNODEClassifier, SVC()) ==")
    m1d = load_mnist1d()
    if m1d is not None:
        X, y, _, _ = m1d
        source = "mnist1d"
    else:
        X, y = load_digits(return_X_y=True)
        source = "digits"
    X = StandardScaler().fit_transform(X)
    sizes = [250, 500, 1000] if quick else [250, 500, 1000, 2000, 4000]
    sizes = [n for n in sizes if n <= len(X)]
    lines.append(f"{'N':>6s} {'RKHSNODE (s)':>12s} {'SVC (s)':>8s}   ({source})")
    out = []
    for n in sizes:
        Xn, yn = X[:n], y[:n]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _sync(device)
            t0 = time.perf_counter()
            RKHSNODEClassifier(device=device, random_state=seed).fit(Xn, yn)
            _sync(device)
            t_node = time.perf_counter() - t0
            t0 = time.perf_counter()
            SVC().fit(Xn, yn)
            t_svc = time.perf_counter() - t0
        lines.append(f"{n:6d} {t_node:12.2f} {t_svc:8.3f}")
        print(lines[-1], flush=True)
        out.append((n, t_node, t_svc))
        record.append(dict(section="scaling", dataset=source, n_train=n, rkhs_fit_time=t_node, svc_fit_time=t_svc))
    return out


def plot(record, scaling):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = [r for r in record if r["section"] == "accuracy"]
    names = sorted({r["dataset"] for r in acc}, key=[r["dataset"] for r in acc].index)
    models_ = sorted({r["model"] for r in acc}, key=[r["model"] for r in acc].index)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    width = 0.8 / len(models_)
    for j, mname in enumerate(models_):
        vals = [next((r["test_accuracy"] for r in acc if r["dataset"] == d and r["model"] == mname), np.nan)
                for d in names]
        axes[0].bar(np.arange(len(names)) + j * width, vals, width, label=mname)
    axes[0].set_xticks(np.arange(len(names)) + 0.4 - width / 2)
    axes[0].set_xticklabels(names)
    axes[0].set_ylabel("test accuracy")
    axes[0].set_ylim(0.5, 1.0)
    axes[0].legend(fontsize=7)
    if scaling:
        n, tn, ts = map(np.array, zip(*scaling))
        axes[1].loglog(n, tn, "o-", label="RKHSNODE (defaults)")
        axes[1].loglog(n, ts, "s-", label="SVC()")
        axes[1].loglog(n, tn[0] * n / n[0], "k:", label="slope 1 (linear in N)")
        axes[1].set_xlabel("training points N")
        axes[1].set_ylabel("fit time (s)")
        axes[1].legend()
    fig.tight_layout()
    path = os.path.join(RESULTS, "bench_rkhs.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small grid and sizes: under 3 minutes on CPU")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    os.makedirs(RESULTS, exist_ok=True)
    lines, record = [], []
    t0 = time.perf_counter()
    bench_accuracy(a.device, a.seed, a.quick, lines, record)
    scaling = bench_scaling(a.device, a.seed, a.quick, lines, record)
    lines.append(f"\ntotal benchmark time {time.perf_counter() - t0:.1f}s (quick={a.quick}, device={a.device}, "
                 f"torch threads={torch.get_num_threads()})")
    text = "\n".join(lines)
    print("\n" + text)
    with open(os.path.join(RESULTS, "bench_rkhs.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(RESULTS, "bench_rkhs.json"), "w") as f:
        json.dump(record, f, indent=1)
    print("plot:", plot(record, scaling))


if __name__ == "__main__":
    main()
