"""VarProNetClassifier (stochastic VarPro on a deep network, thesis §III.6.2) against SGD-momentum and Adam.

Question: trained on the same feature network, does the VarPro head (exact ridge projection of the last layer
on every minibatch, momentum average, then a gradient step of the backbone, Eq. III.45-III.46) reach the test
accuracy of the usual optimisers, and how fast?

Data sets
---------
* ``mnist1d``: ``mnist1d.data.make_dataset(get_dataset_args())`` generated locally (seed 42): 4000 training and
  1000 test rows, 40 features, 10 classes. Network: :class:`skflow.flows.varpronet.Conv1dFeatures` at its
  defaults (three stride-2 convolutions of 32 channels, kernel 5, ReLU, ReLU, tanh; ``M = 160`` features).
* ``digits``: ``sklearn.datasets.load_digits``, a stratified split of 1297 training and 500 test rows
  (``random_state=0``), 64 features. Network: :class:`skflow.flows.varpronet.MLPFeatures` at its defaults
  (Linear(64, 128)-tanh-Linear(128, 128)-tanh; ``M = 128``).

X is standardised with the training rows' statistics.

Contenders (the same module class and initialisation law; float32; one thread)
------------------------------------------------------------------------------
* ``VarPro``: ``VarProNetClassifier(module, batch_size=b, max_iter=E, early_stopping=False, tol=0,
  dtype='float32', random_state=s)``, otherwise at its defaults: squared loss on one-hot targets, the head solved
  exactly on every minibatch and averaged with momentum 0.9, the backbone stepped with the estimator's defaults.
* ``Adam``: the module followed by a plain ``nn.Linear(M, 10)`` last layer, both trained by ``torch.optim.Adam``
  (learning rate 3e-3, the best of {1e-3, 3e-3, 1e-2} on MNIST-1D in a pilot run) on the **cross-entropy** loss
  (the usual choice for these optimisers, which favours them), same minibatches and number of epochs.
* ``SGD-m``: the same with ``torch.optim.SGD(lr=0.05, momentum=0.9)``.

The module is built under ``torch.manual_seed(s)`` for the baselines; VarProNetClassifier builds it under a seed
drawn from ``random_state=s`` (same law, other draw).

Protocol
--------
For every data set, batch size ``b`` in {64, 128, 512} and seed ``s`` in {0, 1, 2} the three contenders run one
after the other (interleaved, so that a slow phase of the shared machine hits them alike) for ``E`` epochs (40 on
MNIST-1D, 30 on digits), on one thread (``torch.set_num_threads(1)``). The test accuracy is read after every epoch,
its time excluded from the clock: for VarPro by the ``monitor`` of one ``fit`` (``est.fit(X, y, monitor=...)``,
called after every epoch with the fit's working copy of the estimator, whose ``flow_`` is the live engine: its
``predict`` is the model at that epoch, exactly what the fit would return if stopped there, since minibatch VarPro
has no final re-projection and ``early_stopping=False`` no restore; the monitor's own time, measured inside it, is
subtracted); the final point is the fitted estimator's own ``score``, and its time the whole ``fit`` (validation of
the inputs, set-up and the end-of-fit diagnostics included). Reported: the final test accuracy, the fit time, and
the time to reach a target accuracy (first epoch at or above it: 0.90 and 0.95 on MNIST-1D, 0.95 and 0.97 on
digits), as medians (and mean +- std for the accuracies) over seeds; ``nan`` when a seed never reaches it.

Acceptance (issue): VarProNetClassifier with a small 1-D CNN reaches, on MNIST-1D (4000 train / 1000 test), a test
accuracy within 0.01 of the same network trained by Adam; reported at VarPro's default batch size (128) over the
seeds, with Adam at each learning rate of {1e-3, 3e-3, 1e-2} (the comparison is with the best of them, same
epochs and batch size). Also reported: VarProNetClassifier at *all* its defaults (early stopping on a tenth of
the rows, float64, at most 100 epochs), one plain ``fit``. The full run takes about 7 minutes on one core.

``--quick`` (under a minute): one seed, batch 128, 15 / 20 epochs, no acceptance runs.

Run: ``python benchmarks/bench_varpronet.py [--quick]``; results in ``benchmarks/results/bench_varpronet[_quick]``
(``.json``, ``.txt``, ``.png``).
"""

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from skflow import VarProNetClassifier  # noqa: E402
from skflow.flows.varpronet import Conv1dFeatures, MLPFeatures  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
TARGETS = {"mnist1d": (0.90, 0.95), "digits": (0.95, 0.97)}  # time to reach each accuracy
MODULES = {"mnist1d": Conv1dFeatures, "digits": MLPFeatures}
ADAM_LR, SGD_LR = 3e-3, 0.05


def load(name):
    if name == "digits":
        X, y = load_digits(return_X_y=True)
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=500, random_state=0, stratify=y)
    else:
        from mnist1d.data import get_dataset_args, make_dataset

        d = make_dataset(get_dataset_args())
        Xtr, ytr, Xte, yte = d["x"], d["y"], d["x_test"], d["y_test"]
    sc = StandardScaler().fit(Xtr)
    return sc.transform(Xtr), np.asarray(ytr), sc.transform(Xte), np.asarray(yte)


# ------------------------------------------------------------------------------------------------ contenders
def run_varpro(name, X, y, Xte, yte, batch, epochs, seed):
    curve, state = [], {"t0": 0.0, "excluded": 0.0}

    def monitor(i, estimator, record):
        """After epoch ``i``: ``(training time, test accuracy)`` of the live engine, this call's time excluded."""
        t = time.perf_counter()
        curve.append((t - state["t0"] - state["excluded"], float(estimator.score(Xte, yte))))
        state["excluded"] += time.perf_counter() - t

    est = VarProNetClassifier(MODULES[name], batch_size=batch, max_iter=epochs, early_stopping=False, tol=0,
                              dtype="float32", device="cpu", random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state["t0"] = time.perf_counter()
        est.fit(X, y, monitor=monitor)
        fit_time = time.perf_counter() - state["t0"] - state["excluded"]
    acc = float(est.score(Xte, yte))
    curve.append((fit_time, acc))
    return {"acc": acc, "time": fit_time, "curve": curve}


def run_torch(name, X, y, Xte, yte, batch, epochs, seed, optimiser, lr):
    """The module + nn.Linear head trained by Adam / SGD-momentum on the cross-entropy."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    net = MODULES[name](X.shape[1])
    Xt, yt = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
    with torch.no_grad():
        M = net(Xt[:1]).shape[1]
    model = torch.nn.Sequential(net, torch.nn.Linear(M, int(y.max()) + 1))
    opt = (torch.optim.Adam(model.parameters(), lr=lr) if optimiser == "adam"
           else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    gen = torch.Generator().manual_seed(seed)
    Xe = torch.as_tensor(Xte, dtype=torch.float32)
    curve, excluded = [], 0.0
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(Xt), generator=gen)
        for i in range(0, len(Xt), batch):
            idx = perm[i:i + batch]
            loss = torch.nn.functional.cross_entropy(model(Xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        t = time.perf_counter()
        model.eval()
        with torch.no_grad():
            acc = float(np.mean(model(Xe).argmax(1).numpy() == yte))
        curve.append((t - t0 - excluded, acc))
        excluded += time.perf_counter() - t
    return {"acc": curve[-1][1], "time": curve[-1][0], "curve": curve}


def time_to(curve, target):
    for t, acc in curve:
        if acc >= target:
            return t
    return float("nan")


# ------------------------------------------------------------------------------------------------ runs
def compare(datasets, batches, seeds, epochs):
    rows = []
    for name in datasets:
        X, y, Xte, yte = load(name)
        for batch in batches[name]:
            for seed in seeds:
                contenders = {
                    "VarPro": lambda: run_varpro(name, X, y, Xte, yte, batch, epochs[name], seed),
                    "Adam": lambda: run_torch(name, X, y, Xte, yte, batch, epochs[name], seed, "adam", ADAM_LR),
                    "SGD-m": lambda: run_torch(name, X, y, Xte, yte, batch, epochs[name], seed, "sgd", SGD_LR),
                }
                for method, run in contenders.items():
                    r = run()
                    r.update(data=name, batch=batch, seed=seed, method=method)
                    rows.append(r)
                    reach = "  ".join(f"to {a:.2f}: {time_to(r['curve'], a):6.2f} s" for a in TARGETS[name])
                    print(f"  {name:8s} b={batch:4d} seed={seed} {method:7s} acc {r['acc']:.3f}  "
                          f"fit {r['time']:6.1f} s  {reach}", flush=True)
    return rows


def acceptance(rows, seeds, epochs, batch):
    """MNIST-1D, 1-D CNN: VarPro and Adam (lr 3e-3) of ``rows`` at ``batch``, plus Adam at lr 1e-3 and 1e-2 and
    VarProNetClassifier at all its defaults (early stopping, float64), for every seed."""
    X, y, Xte, yte = load("mnist1d")
    out = [dict(method="VarPro" if r["method"] == "VarPro" else f"Adam lr={ADAM_LR:g}", acc=r["acc"], time=r["time"],
                seed=r["seed"]) for r in rows
           if r["data"] == "mnist1d" and r["batch"] == batch and r["method"] in ("VarPro", "Adam")]
    for seed in seeds:
        est = VarProNetClassifier(Conv1dFeatures, device="cpu", random_state=seed)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
        out.append(dict(method="VarPro, all defaults", acc=float(est.score(Xte, yte)),
                        time=time.perf_counter() - t0, seed=seed, n_iter=est.n_iter_))
        for lr in (1e-3, 1e-2):
            r = run_torch("mnist1d", X, y, Xte, yte, batch, epochs, seed, "adam", lr)
            out.append(dict(method=f"Adam lr={lr:g}", acc=r["acc"], time=r["time"], seed=seed))
        print("  " + "  ".join(f"{r['method']}: {r['acc']:.3f} ({r['time']:.1f} s)" for r in out[-3:]), flush=True)
    return out


# ------------------------------------------------------------------------------------------------ report
def table(rows, acc_rows, targets):
    lines = ["Final test accuracy (mean +- std and median over seeds), fit time and time to reach a test accuracy "
             "(medians over seeds; nan: not reached by every seed)", ""]
    lines.append(f"{'data':8s} {'batch':>5s} {'method':7s} {'acc mean+-std':>15s} {'median':>7s} {'fit s':>7s}   "
                 "time to reach")
    keys = sorted({(r["data"], r["batch"], r["method"]) for r in rows},
                  key=lambda k: (k[0], k[1], ["VarPro", "Adam", "SGD-m"].index(k[2])))
    for data, batch, method in keys:
        sel = [r for r in rows if (r["data"], r["batch"], r["method"]) == (data, batch, method)]
        acc = np.array([r["acc"] for r in sel])
        lines.append(f"{data:8s} {batch:5d} {method:7s} {acc.mean():8.3f} +- {acc.std():.3f} {np.median(acc):7.3f} "
                     f"{np.median([r['time'] for r in sel]):7.1f}   " + "  ".join(
                         f"{a:.2f}: {np.median([time_to(r['curve'], a) for r in sel]):6.2f} s" for a in targets[data]))
    if acc_rows:
        lines += ["", "Acceptance: MNIST-1D, Conv1dFeatures, test accuracy mean +- std over seeds (fit time, s)"]
        for method in dict.fromkeys(r["method"] for r in acc_rows):
            sel = [r for r in acc_rows if r["method"] == method]
            acc, t = np.array([r["acc"] for r in sel]), np.array([r["time"] for r in sel])
            lines.append(f"  {method:22s} {acc.mean():.4f} +- {acc.std():.4f}   fit {t.mean():6.1f} +- {t.std():.1f} s"
                         f"   (n = {len(sel)})")
        varpro = np.mean([r["acc"] for r in acc_rows if r["method"] == "VarPro"])
        best = max((np.mean([r["acc"] for r in acc_rows if r["method"] == m]), m)
                   for m in {r["method"] for r in acc_rows if r["method"].startswith("Adam")})
        lines.append(f"  VarPro - best Adam ({best[1]}): {varpro - best[0]:+.4f}  -> criterion (>= -0.01) "
                     f"{'met' if varpro - best[0] >= -0.01 else 'NOT met'}")
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["data"] for r in rows})
    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(len(datasets), len(batches), figsize=(4.0 * len(batches), 3.2 * len(datasets)),
                             squeeze=False)
    colours = {"VarPro": "C0", "Adam": "C1", "SGD-m": "C2"}
    for i, data in enumerate(datasets):
        for j, batch in enumerate(batches):
            ax = axes[i][j]
            for method, colour in colours.items():
                sel = [r for r in rows if (r["data"], r["batch"], r["method"]) == (data, batch, method)]
                if not sel:
                    continue
                n = min(len(r["curve"]) for r in sel)
                t = np.median([[p[0] for p in r["curve"][:n]] for r in sel], axis=0)
                a = np.median([[p[1] for p in r["curve"][:n]] for r in sel], axis=0)
                ax.plot(t, a, color=colour, label=method)
            for a in TARGETS[data]:
                ax.axhline(a, color="grey", lw=0.8, ls=":")
            ax.set_title(f"{data}, batch {batch}")
            ax.set_ylim(max(0.0, TARGETS[data][0] - 0.3), 1.0)
            if i == len(datasets) - 1:
                ax.set_xlabel("training time (s)")
            if j == 0:
                ax.set_ylabel("test accuracy (median)")
    axes[0][0].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, one batch size, few epochs (< 60 s)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=40, help="epochs on MNIST-1D (digits: 30)")
    parser.add_argument("--from-json", help="re-tabulate and re-plot a stored result (no fitting)")
    args = parser.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            stored = json.load(f)
        text = table(stored["rows"], stored["acceptance"], TARGETS)
        print(text)
        stem = os.path.splitext(args.from_json)[0]
        with open(stem + ".txt", "w") as f:
            f.write(text + "\n")
        plot(stored["rows"], stem + ".png")
        return
    torch.set_num_threads(1)
    if args.quick:
        seeds, batches, epochs = [0], {"mnist1d": [128], "digits": [128]}, {"mnist1d": 15, "digits": 20}
        acc_seeds = []
    else:
        seeds = list(range(args.seeds))
        batches = {"mnist1d": [64, 128, 512], "digits": [64, 128, 512]}
        epochs = {"mnist1d": args.epochs, "digits": 30}
        acc_seeds = seeds
    t0 = time.perf_counter()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    rows = compare(["mnist1d", "digits"], batches, seeds, epochs)
    acc_rows = acceptance(rows, acc_seeds, epochs["mnist1d"], 128) if acc_seeds else []
    text = table(rows, acc_rows, TARGETS)
    print(text)
    print(f"total {time.perf_counter() - t0:.0f} s")
    os.makedirs(RESULTS, exist_ok=True)
    stem = os.path.join(RESULTS, "bench_varpronet" + ("_quick" if args.quick else ""))
    with open(stem + ".txt", "w") as f:
        f.write(text + "\n")
    with open(stem + ".json", "w") as f:
        json.dump({"rows": rows, "acceptance": acc_rows, "targets": TARGETS, "quick": args.quick}, f, indent=1)
    plot(rows, stem + ".png")


if __name__ == "__main__":
    main()
