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

2. Scaling: fit time against the number of training points ``N`` on MNIST-1D generated at larger sizes
   (cached in ``benchmarks/results/``): ``RKHSNODEClassifier`` for a fixed number of epochs (its cost is linear in
   ``N``; the time of a default fit is that per-epoch cost times ``max_iter``), ``SVC()`` and the one-hot
   ``KernelRidge``. Each baseline fit runs in a child process under a time budget (``--budget`` seconds) and is
   reported as ``timeout`` when it overruns; a fit predicted (from the previous size, at the method's complexity)
   to overrun the budget several times over, or whose kernel matrix would not fit in ``--mem-gb``, is ``skipped``.

Tables are printed and written to ``benchmarks/results/bench_rkhs.{txt,json}``, plots to
``benchmarks/results/bench_rkhs_*.png``.

Run: ``python benchmarks/bench_rkhs.py [--quick] [--device auto|cpu|cuda] [--seed 0] [--budget S] [--mem-gb G]``.
``--quick`` (about 3 minutes on 2 CPU cores) uses a smaller SVC grid, 1500 MNIST-1D training points, scaling sizes up
to 16000 and a 10 s budget; the full run (about 15 minutes) uses sizes up to 64000 and a 60 s budget.
"""

import argparse
import json
import multiprocessing as mp
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


def load_mnist1d(num_samples=5000):
    """MNIST-1D generated locally (no download): (x, y, x_test, y_test), or None (with a message).

    ``num_samples=5000`` is the standard dataset (4000 train / 1000 test). Larger sizes (scaling run) are cached
    in ``benchmarks/results/`` because generation costs about 0.6 ms per sample.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        print("MNIST-1D skipped: the mnist1d package is not installed.")
        return None
    cache = os.path.join(RESULTS, f"mnist1d_{num_samples}.npz")
    if os.path.exists(cache):
        d = np.load(cache)
        return d["x"], d["y"], d["x_test"], d["y_test"]
    try:
        args = get_dataset_args()
        args.num_samples = num_samples
        data = make_dataset(args)  # procedurally generated from templates shipped with the package
    except Exception as exc:  # noqa: BLE001  # pragma: no cover - depends on the package version
        print(f"MNIST-1D skipped: make_dataset failed ({exc!r}); it may need a download, which is not done here.")
        return None
    out = tuple(np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test"))
    np.savez(cache, **dict(zip(("x", "y", "x_test", "y_test"), out)))
    return out


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
        if name == "mnist1d":
            lines.append(f"{name:14s} {'':5s} {'(published: logistic / MLP / CNN)':28s}   0.32 / 0.68 / 0.94")


def _child(fn, X, y, q):
    t0 = time.perf_counter()
    fn().fit(X, y)
    q.put(time.perf_counter() - t0)


def fit_with_budget(factory, X, y, budget):
    """Fit ``factory()`` in a forked child process; its fit time, or None if it overran ``budget`` seconds."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    proc = ctx.Process(target=_child, args=(factory, X, y, q))
    proc.start()
    proc.join(budget)
    if proc.is_alive():
        proc.terminate()
        proc.join()
        return None
    return q.get() if proc.exitcode == 0 and not q.empty() else float("nan")


#: baselines of the scaling run: factory, exponent of the cost in N used to predict the next size, memory in bytes
SCALING_BASELINES = {
    "SVC()": (lambda g: SVC(), 2.0, lambda n: 0),
    # KernelRidge holds the N x N kernel matrix and a copy in the solver
    "one-hot KernelRidge": (lambda g: OneHotKernelRidgeClassifier(gamma=g, alpha=1e-3), 3.0, lambda n: 2 * 8 * n * n),
}


def bench_scaling(device, seed, quick, lines, record, budget, mem_gb):
    epochs = 5
    sizes = [1000, 2000, 4000, 8000, 16000] if quick else [1000, 2000, 4000, 8000, 16000, 32000, 64000]
    lines.append("")
    lines.append(f"== scaling on MNIST-1D: fit time (s) vs N; baselines under a {budget:g} s budget each, "
                 f"{mem_gb:g} GB memory cap ==")
    m1d = load_mnist1d(num_samples=int(max(sizes) / 0.8) + 10)
    if m1d is None:
        lines.append("skipped: MNIST-1D unavailable")
        return []
    X, y, _, _ = m1d
    X = StandardScaler().fit_transform(X)
    sizes = [n for n in sizes if n <= len(X)]
    default_epochs = RKHSNODEClassifier().max_iter
    head = f"{'N':>6s} {'RKHSNODE ' + str(epochs) + ' ep':>14s} {'s/epoch':>8s} {'x' + str(default_epochs) + ' ep':>9s}"
    head += "".join(f" {name:>20s}" for name in SCALING_BASELINES)
    lines.append(head)
    print(head, flush=True)
    last = {name: None for name in SCALING_BASELINES}  # (n, time) of the last completed fit
    failed = {name: None for name in SCALING_BASELINES}
    out = []
    for n in sizes:
        Xn, yn = X[:n], y[:n]
        gamma = 1.0 / (2.0 * median_length_scale(Xn) ** 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _sync(device)
            t0 = time.perf_counter()
            est = RKHSNODEClassifier(device=device, random_state=seed, max_iter=epochs, tol=0).fit(Xn, yn)
            _sync(device)
            t_node = time.perf_counter() - t0
        row = dict(section="scaling", dataset="mnist1d", n_train=n, rkhs_fit_time=t_node, rkhs_epochs=epochs,
                   rkhs_device=est.device_.type, rkhs_default_fit_time_est=t_node / epochs * default_epochs)
        cells = []
        for name, (factory, expo, mem) in SCALING_BASELINES.items():
            if failed[name]:
                status, t = f"skipped ({failed[name]})", None
            elif mem(n) > mem_gb * 2**30:
                status, t = f"skipped (mem {mem(n) / 2**30:.1f}GB)", None
                failed[name] = "memory"
            elif last[name] is not None and last[name][1] * (n / last[name][0]) ** expo > 3 * budget:
                pred = last[name][1] * (n / last[name][0]) ** expo
                status, t = f"skipped (pred {pred:.0f}s)", None
                failed[name] = "time"
            else:
                t = fit_with_budget(lambda: factory(gamma), Xn, yn, budget)
                if t is None:
                    status = f"timeout (>{budget:g}s)"
                    failed[name] = "timeout"
                else:
                    status = f"{t:.2f}"
                    last[name] = (n, t)
            cells.append(status)
            row[name] = t if t is not None else status
        line = f"{n:6d} {t_node:14.2f} {t_node / epochs:8.3f} {t_node / epochs * default_epochs:9.1f}"
        line += "".join(f" {c:>20s}" for c in cells)
        lines.append(line)
        print(line, flush=True)
        out.append(row)
        record.append(row)
    lines.append(f"(RKHSNODE: {epochs} epochs timed, on {out[0]['rkhs_device'] if out else device}; "
                 f"'x{default_epochs} ep' = per-epoch time x the default max_iter, the cost of a default fit)")
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
    axes[0].set_ylim(0.3, 1.0)
    axes[0].legend(fontsize=7)
    if scaling:
        n = np.array([r["n_train"] for r in scaling], dtype=float)
        axes[1].loglog(n, [r["rkhs_default_fit_time_est"] for r in scaling], "o-",
                       label="RKHSNODE (default epochs, from per-epoch time)")
        for name, mk in zip(SCALING_BASELINES, ("s-", "^-")):
            t = np.array([r[name] if isinstance(r[name], float) else np.nan for r in scaling])
            axes[1].loglog(n, t, mk, label=name)
            bad = [r for r in scaling if not isinstance(r[name], float)]
            if bad:
                axes[1].axvline(bad[0]["n_train"], ls=":", color=axes[1].lines[-1].get_color(), lw=1)
        axes[1].loglog(n, scaling[0]["rkhs_default_fit_time_est"] * n / n[0], "k:", lw=1, label="slope 1")
        axes[1].set_xlabel("training points N (MNIST-1D); dotted verticals: timeout / skipped")
        axes[1].set_ylabel("fit time (s)")
        axes[1].legend(fontsize=7)
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
    p.add_argument("--budget", type=float, default=None, help="seconds per baseline fit in the scaling run "
                   "(default 10 with --quick, 60 otherwise)")
    p.add_argument("--mem-gb", type=float, default=4.0, help="memory cap for a kernel matrix (GB)")
    a = p.parse_args()
    budget = a.budget if a.budget is not None else (10.0 if a.quick else 60.0)
    os.makedirs(RESULTS, exist_ok=True)
    lines, record = [], []
    t0 = time.perf_counter()
    bench_accuracy(a.device, a.seed, a.quick, lines, record)
    scaling = bench_scaling(a.device, a.seed, a.quick, lines, record, budget, a.mem_gb)
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
