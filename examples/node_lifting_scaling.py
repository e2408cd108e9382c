"""
=====================================================================
Lifting and scaling: the output scale alpha buys convergence
=====================================================================

Thesis Prop. II.6.1. Inputs are lifted to ``z(0) = (x, 0)`` and the prediction is ``alpha * z(1)[d:]``. At
the identity initialisation (``u = 0``) the model predicts 0, so the initial risk ``(1/2N) sum |y|^2`` does
not depend on ``alpha``, while the P-L inequality (Eq. II.41) gains a factor ``alpha^2``:
``|grad R|^2 >= 2 alpha^2 lambda_0 R / N`` near the initialisation. Large ``alpha`` therefore gives a linear
rate ``~ alpha^2`` in flow time and a short distance travelled (the lazy / kernel regime); small ``alpha``
must move the particles far.

The flow gets stiffer like ``alpha^2`` too, so the time step is scaled ``tau = tau_0 / alpha^2`` with
``tau_0 = 0.8`` for large ``alpha``, and capped at ``tau_max = 0.1`` for small ``alpha``:
``tau = min(tau_max, tau_0 / alpha^2)``. The cap is needed because the stiffness of the feature (``w``,
``b``) part of the flow does not vanish with ``alpha``: at small ``alpha`` the outer weights must grow like
``1 / alpha``, the particles travel far and the P-L ratio (a lower bound of the curvature scale) grows by
orders of magnitude along the run. With ``tau = 1.6 / alpha^2`` (the package default's ``tau alpha^2``) the
risk of this problem is not monotone at ``alpha <= 2`` (spikes, the P-L bound ``R(0) exp(-m t)`` fails), and
``tau = 6.4`` at ``alpha = 0.5`` makes the particles fly off. Every run takes the same number of
iterations, so compared in flow time ``t`` the curves of large ``alpha`` stop earlier. ``--fixed-lr``
instead uses one small ``tau`` (``tau_0 / max(alpha)^2``, stable at the largest ``alpha``) for every run:
all curves then cover the same flow time.

Data: 300 points of make_friedman1 (noise 0.5), inputs standardised, targets standardised by the
estimator; ``S = 8`` layers of ``M = 384 > N`` particles so that the finite-width kernel ``K1`` is
non-singular and its ``lambda_0`` (Thm. II.7) is defined. Full batch, no early stopping: the training flow
itself.

Printed: for each alpha the initial risk, the final risk, the flow time, the observed rates (``log 2 /
t_half`` with ``t_half`` the flow time to halve the risk; average: ``-log(R(T)/R(0))/T``), the P-L ratio at
``t = 0`` (exactly ``alpha^2`` times that of ``alpha = 1``: at ``u = 0`` only the outer weights have a
gradient, linear in ``alpha``), the P-L constant (its minimum along the run), the kernel rate
``2 alpha^2 lambda_0 / N`` and the COT distance travelled. The figure
``examples/figures/node_lifting_scaling.png`` shows the risk against flow time for each alpha, the risk
against the rescaled time ``alpha^2 t`` (the curves would coincide if the rate were exactly ``~ alpha^2``),
and the rates against alpha on log-log axes with the ``alpha^2`` reference slope.

Run: ``python examples/node_lifting_scaling.py [--quick] [--fixed-lr] [--alphas A ...] [--iters I]
[--threads T] [--seed S] [--device D]``
"""

# %%
import argparse
import os
import time
import warnings

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import torch
from sklearn.datasets import make_friedman1
from sklearn.preprocessing import StandardScaler

from skflow import MeanFieldNODERegressor

FIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures")
TAU0 = 0.8  # tau * alpha^2 at large alpha (the package default, tau = 0.1 at alpha = 4, has 1.6)
TAU_MAX = 0.1  # cap at small alpha, where the stiffness no longer falls like alpha^2
RATES = {  # the rates compared with alpha^2, and their labels in panel (c)
    "rate_half": ("o", "observed rate log 2 / t_half (risk halved)"),
    "rate_avg": ("s", "observed rate, average -log(R(T)/R(0))/T"),
    "pl0": ("^", "P-L ratio at t = 0"),
    "pl_min": ("v", "P-L constant m (min along the run)"),
}

# %%
# One training flow per alpha
# ---------------------------
# Every run has the same data, seed, depth, width and number of iterations; only ``alpha`` and the time
# step change.


def time_step(alpha, alphas, fixed_lr):
    return min(TAU_MAX, TAU0 / max(alphas) ** 2) if fixed_lr else min(TAU_MAX, TAU0 / alpha**2)


def half_rate(t, R):
    """``log 2 / t_half``, with ``t_half`` the flow time at which the risk first falls to ``R(0) / 2``
    (interpolated in ``log R``); NaN when the run never gets there."""
    below = np.nonzero(R <= R[0] / 2)[0]
    if below.size == 0:
        return float("nan")
    j = below[0]
    la, lb = np.log(R[j - 1]), np.log(R[j])
    t_half = t[j - 1] + (t[j] - t[j - 1]) * (la - np.log(R[0] / 2)) / (la - lb)
    return float(np.log(2.0) / t_half)


def fit_one(X, y, alpha, tau, args):
    """Fit the full-batch flow at one ``alpha``; returns the estimator and its row of the table."""
    est = MeanFieldNODERegressor(n_layers=args.n_layers, width=args.width, output_scale=alpha, learning_rate=tau,
                                 max_iter=args.iters, tol=0.0, early_stopping=False, device=args.device,
                                 random_state=args.seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of a fixed budget
        est.fit(X, y)
    rep, t, R = est.convergence_report_, est.flow_time_, est.loss_curve_
    row = dict(alpha=alpha, tau=tau, R0=R[0], RT=R[-1], T=t[-1], rate_half=half_rate(t, R),
               rate_avg=rep["observed_rate"], pl0=est.pl_ratio_curve_[0], pl_min=est.pl_constant_,
               kernel_rate=rep["kernel_rate"], cot=est.cot_distance_, bound=rep["pl_bound_holds"],
               lambda0=est.kernel_lambda_min_, stop=est.stop_reason_, seconds=time.perf_counter() - t0)
    return est, row


def run_alphas(X, y, alphas, rule, args):
    print(f"make_friedman1: N={args.n_samples}, S={args.n_layers}, M={args.width}, {args.iters} iterations "
          f"per alpha, tau = {rule}")
    print(f"{'alpha':>6s} {'tau':>8s} {'R(0)':>7s} {'R(T)':>9s} {'T':>8s} {'ln2/t_1/2':>9s} {'rate avg':>9s} "
          f"{'PL(t=0)':>9s} {'PL min m':>9s} {'kernel 2a2l0/N':>14s} {'W2_COT':>7s} {'bound ok':>8s} {'s':>5s}")
    models, rows = {}, []
    for alpha in alphas:
        models[alpha], r = fit_one(X, y, alpha, time_step(alpha, alphas, args.fixed_lr), args)
        rows.append(r)
        print(f"{alpha:6g} {r['tau']:8.4g} {r['R0']:7.4f} {r['RT']:9.3e} {r['T']:8.4g} {r['rate_half']:9.4g} "
              f"{r['rate_avg']:9.4g} {r['pl0']:9.4g} {r['pl_min']:9.4g} {r['kernel_rate']:14.4g} "
              f"{r['cot']:7.3f} {str(r['bound']):>8s} {r['seconds']:5.1f}", flush=True)
    return models, rows


# %%
# Rates against alpha
# -------------------
# ``lambda_0`` is a property of the initialisation, the same for every alpha. The slopes of the rates
# against alpha on log-log axes are compared with the prediction 2.


def rate_slopes(alphas, rows):
    lam0 = rows[0]["lambda0"]
    print(f"\nlambda_0 = mean_k lambda_min(K1_k) at initialisation = {lam0:.3e} (independent of alpha: "
          f"{all(np.isclose(r['lambda0'], lam0) for r in rows)})")
    al, slopes = np.array(alphas), {}
    for key in RATES:
        v = np.array([r[key] for r in rows])
        ok = v > 0
        slopes[key] = float(np.polyfit(np.log(al[ok]), np.log(v[ok]), 1)[0]) if ok.sum() >= 2 else float("nan")
    print("log-log slopes against alpha (alpha^2 predicts 2): " +
          ", ".join(f"{k} {v:.2f}" for k, v in slopes.items()))
    return slopes


# %%
# (a), (b) Risk against flow time and against the rescaled time ``alpha^2 t``
# ---------------------------------------------------------------------------


def plot_risk_curves(ax_t, ax_rescaled, models, rows):
    alphas = list(models)
    for c, alpha in zip(plt.cm.viridis(np.linspace(0, 0.9, len(alphas))), alphas):
        est = models[alpha]
        t, R = est.flow_time_, est.loss_curve_
        ax_t.loglog(np.maximum(t, t[1] / 2), R, color=c, lw=2, label=f"alpha={alpha:g}, tau={est.learning_rate:.3g}")
        ax_t.loglog(np.maximum(t, t[1] / 2), R[0] * np.exp(-est.pl_constant_ * t), color=c, ls=":", lw=1)
        ax_rescaled.semilogy(alpha**2 * t, R, color=c, lw=2, label=f"alpha={alpha:g}")
    ax_t.set_xlabel("flow time t (the first point drawn at t_1/2)")
    ax_t.set_ylabel("training risk R(t)")
    ax_t.set_title("(a) risk vs flow time; dotted: P-L bound R(0) exp(-m t)")
    ax_t.set_ylim(min(r["RT"] for r in rows) / 3, max(r["R0"] for r in rows) * 2)
    ax_t.legend(fontsize=8)
    ax_rescaled.set_xlabel("rescaled flow time alpha^2 t")
    ax_rescaled.set_ylabel("training risk R(t)")
    ax_rescaled.set_title("(b) risk vs alpha^2 t (equal if the rate were ~ alpha^2)")
    x_max = min(alpha**2 * models[alpha].flow_time_[-1] for alpha in alphas)
    ax_rescaled.set_xlim(0, x_max)
    shown = [models[a].loss_curve_[a**2 * models[a].flow_time_ <= x_max].min() for a in alphas]
    ax_rescaled.set_ylim(min(shown) / 1.5, max(r["R0"] for r in rows) * 1.5)
    ax_rescaled.legend(fontsize=8)


# %%
# (c) Convergence rate and P-L constant against alpha
# ---------------------------------------------------


def plot_rates(ax, alphas, rows, slopes):
    al = np.array(alphas)
    for key, (marker, label) in RATES.items():
        ax.loglog(al, [r[key] for r in rows], marker + "-", label=f"{label} (slope {slopes[key]:.2f})")
    kr = np.array([r["kernel_rate"] for r in rows])
    if np.all(kr > 0):
        ax.loglog(al, kr, "k.-", label="kernel rate 2 alpha^2 lambda_0 / N")
    ref = rows[len(rows) // 2]["pl0"] * (al / al[len(al) // 2]) ** 2
    ax.loglog(al, ref, "k--", lw=1, label="alpha^2 reference slope")
    ax.set_xticks(al)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("output scale alpha")
    ax.set_ylabel("rate (1 / flow time)")
    ax.set_title("(c) convergence rate and P-L constant vs alpha")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    X, y = make_friedman1(n_samples=args.n_samples, noise=0.5, random_state=0)
    X = StandardScaler().fit_transform(X)
    alphas = sorted(args.alphas)
    rule = (f"{time_step(None, alphas, True):g} (fixed)" if args.fixed_lr
            else f"min({TAU_MAX:g}, {TAU0:g} / alpha^2)")
    models, rows = run_alphas(X, y, alphas, rule, args)
    slopes = rate_slopes(alphas, rows)
    fig, ax = plt.subplots(1, 3, figsize=(17, 5.2))
    plot_risk_curves(ax[0], ax[1], models, rows)
    plot_rates(ax[2], alphas, rows, slopes)
    fig.suptitle(f"Lifting and scaling (Prop. II.6.1): make_friedman1, N={args.n_samples}, S={args.n_layers}, "
                 f"M={args.width}, {args.iters} full-batch iterations, tau = {rule}")
    fig.tight_layout()
    os.makedirs(FIG_DIR, exist_ok=True)
    path = os.path.join(FIG_DIR, "node_lifting_scaling.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"saved {path}  (total {time.perf_counter() - t_start:.0f}s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Lifting and scaling: the output scale alpha buys convergence.")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 150 points, M=160, 100 iterations")
    parser.add_argument("--fixed-lr", action="store_true",
                        help="one time step for every alpha (tau_0 / max(alpha)^2) instead of tau_0 / alpha^2")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0, 8.0])
    parser.add_argument("--iters", type=int, default=None, help="iterations per run (default 600, quick 100)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    args.n_samples, args.width, args.n_layers = (150, 160, 4) if args.quick else (300, 384, 8)
    args.iters = args.iters or (100 if args.quick else 600)
    main(args)
