"""
=====================================================================
RKHS-NODE on digits: training risk towards 0, and accuracy vs depth
=====================================================================

Reproduces, at the scale of ``load_digits``, the thesis's MNIST experiment (§II.7.1, Fig. II.1): a NODE whose
residuals live in a random-feature RKHS (Def. II.4, Eq. II.33), started at the identity (``theta = 0``) and
trained by minibatch SGD with momentum on the cross-entropy, drives the training risk towards 0 while
generalising.

What to look for: the rate is *not* linear here, and the figures show it. For the cross-entropy the P-L
inequality only holds in the form ``||grad R||^2 >= m R^2`` (§II.7), which gives a ``1/t`` decay (``log R``
bends upwards, the P-L ratio ``||grad R||^2 / R`` falls along training); and with ``M = 512`` random features
for ``N = 1198`` points the random-feature kernel matrix is singular, so the linear rate of Thm. II.5
(squared loss, ``M >~ N^2``) is not guaranteed either. The printed "log-rate" is the slope of ``log R`` over
the second half of training. Depth ``S in {1, 5, 10, 20}``; the step is in the units of the
``L2([0, 1], F)`` gradient flow (``theta_k <- theta_k - tau S dR/dtheta_k``), so the same ``learning_rate``
is used for every depth.

Figures (``examples/figures/``): ``rkhs_digits_risk.png`` (training risk vs epoch and vs flow time, per
depth; P-L ratio along training) and ``rkhs_digits_depth.png`` (test accuracy vs depth, with ``SVC()`` for
reference).

Run: ``python examples/rkhs_digits_depth.py [--quick] [--seed S]``
"""

# %%
import argparse
import os
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from skflow import RKHSNODEClassifier

FIGURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures")
DEPTHS = [1, 5, 10, 20]

# %%
# Data
# ----
# A third of ``load_digits`` is held out (stratified); inputs are standardised on the training part.


def load_data():
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=1 / 3, stratify=y, random_state=0)
    sc = StandardScaler().fit(Xtr)
    return sc.transform(Xtr), sc.transform(Xte), ytr, yte


# %%
# One classifier per depth
# ------------------------


def fit_depths(Xtr, Xte, ytr, yte, seed=0, quick=False):
    extra = dict(max_iter=40) if quick else {}
    runs = {}
    for S in DEPTHS:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a stalled shallow fit's SingularKernelWarning (M < N): see above
            m = RKHSNODEClassifier(n_layers=S, random_state=seed, device="cpu", **extra).fit(Xtr, ytr)
        fit_time = time.perf_counter() - t0
        acc, R = m.score(Xte, yte), m.loss_curve_
        # observed linear rate of log R over the second half of training (per epoch)
        half = np.arange(len(R) // 2, len(R))
        rate = -np.polyfit(half, np.log(R[half]), 1)[0]
        runs[S] = (m, acc)
        print(f"S={S:2d}: test acc {acc:.4f}  train risk {R[0]:.3f} -> {R[-1]:.2e}  "
              f"log-rate (2nd half) {rate:.3f}/epoch  min P-L ratio {m.pl_constant_:.3g}  fit {fit_time:.1f}s")
    return runs


# %%
# Training risk and P-L ratio
# ---------------------------
# Left: the risk per epoch; middle: the same curves against flow time ``tau * steps``, the units in which
# the depths are comparable; right: the P-L ratio, which falls along training (cross-entropy).


def plot_risk(runs):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for S, (m, acc) in runs.items():
        epochs = np.arange(1, m.n_iter_ + 1)
        axes[0].semilogy(epochs, m.loss_curve_, label=f"S={S} (test acc {acc:.3f})")
        axes[1].semilogy(m.flow_time_, m.loss_curve_, label=f"S={S}")
        axes[2].semilogy(epochs, m.pl_ratio_curve_, label=f"S={S}")
    axes[0].set_xlabel("epoch (pass through the data)")
    axes[0].set_ylabel("training cross-entropy (epoch average)")
    axes[0].set_title("training risk -> 0 (cross-entropy: ~1/t, sublinear)")
    axes[1].set_xlabel("flow time tau * steps")
    axes[1].set_title("same curves against flow time (S-independent units)")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("P-L ratio ||grad R||^2 / R")
    axes[2].set_title("P-L ratio along training")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(FIGURES, "rkhs_digits_risk.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# %%
# Test accuracy against depth
# ---------------------------


def plot_depth(runs, svc):
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(DEPTHS, [runs[S][1] for S in DEPTHS], "o-", label="RKHSNODEClassifier")
    ax.axhline(svc, color="k", ls="--", label=f"SVC() = {svc:.3f}")
    ax.set_xscale("log")
    ax.set_xticks(DEPTHS)
    ax.set_xticklabels([str(S) for S in DEPTHS])
    ax.set_xlabel("depth S")
    ax.set_ylabel("test accuracy (digits, 1/3 held out)")
    ax.legend()
    fig.tight_layout()
    path = os.path.join(FIGURES, "rkhs_digits_depth.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(quick=False, seed=0):
    os.makedirs(FIGURES, exist_ok=True)
    Xtr, Xte, ytr, yte = load_data()
    svc = SVC().fit(Xtr, ytr).score(Xte, yte)
    runs = fit_depths(Xtr, Xte, ytr, yte, seed, quick)
    print(f"SVC() test acc {svc:.4f}")
    print("saved", plot_risk(runs), plot_depth(runs, svc))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="RKHS-NODE on digits: training risk and accuracy vs depth.")
    parser.add_argument("--quick", action="store_true", help="40 epochs instead of the default max_iter (100)")
    parser.add_argument("--seed", type=int, default=0)
    main(**vars(parser.parse_args()))
