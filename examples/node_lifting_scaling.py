"""Lifting and scaling (thesis Prop. II.6.1, SPEC section 1): the output scale alpha buys convergence.

Inputs are lifted to ``z(0) = (x, 0)`` and the prediction is ``alpha * z(1)[d:]``. At the identity
initialisation (``u = 0``) the model predicts 0, so the initial risk ``(1/2N) sum |y|^2`` does not depend on
``alpha``, while the P-L inequality (Eq. II.41) gains a factor ``alpha^2``: ``|grad R|^2 >= 2 alpha^2 lambda_0 R / N``
near the initialisation. Large ``alpha`` therefore gives a linear rate ``~ alpha^2`` in flow time and a short
distance travelled (the lazy / kernel regime); small ``alpha`` must move the particles far.

The flow gets stiffer like ``alpha^2`` too, so the time step is scaled ``tau = tau_0 / alpha^2`` with
``tau_0 = 0.8`` for large ``alpha``, and capped at ``tau_max = 0.1`` for small ``alpha``:
``tau = min(tau_max, tau_0 / alpha^2)``. The cap is needed because the stiffness of the feature (``w``, ``b``) part
of the flow does not vanish with ``alpha``: at small ``alpha`` the outer weights must grow like ``1 / alpha``, the
particles travel far and the P-L ratio (a lower bound of the curvature scale) grows by orders of magnitude along
the run. With ``tau = 1.6 / alpha^2`` (the package default's ``tau alpha^2``) the risk of this problem is not
monotone at ``alpha <= 2`` (spikes, the P-L bound ``R(0) exp(-m t)`` fails), and ``tau = 6.4`` at ``alpha = 0.5``
makes the particles fly off. Every run takes the same number of iterations, so compared in flow time ``t`` the
curves of large ``alpha`` stop earlier. ``--fixed-lr`` instead uses one small ``tau`` (``tau_0 / max(alpha)^2``,
stable at the largest ``alpha``) for every run: all curves then cover the same flow time.

Data: 300 points of make_friedman1 (noise 0.5), inputs standardised, targets standardised by the estimator;
``S = 8`` layers of ``M = 384 > N`` particles so that the finite-width kernel ``K1`` is non-singular and its
``lambda_0`` (Thm. II.7) is defined. Full batch, no early stopping: the training flow itself.

Printed: for each alpha the initial risk, the final risk, the flow time, the observed rates (``log 2 / t_half``
with ``t_half`` the flow time to halve the risk; average: ``-log(R(T)/R(0))/T``), the P-L ratio at ``t = 0``
(exactly ``alpha^2`` times that of ``alpha = 1``: at ``u = 0`` only the outer weights have a gradient, linear in
``alpha``), the P-L constant (its minimum along the run), the kernel rate ``2 alpha^2 lambda_0 / N`` and the COT distance travelled.
Saved: ``examples/figures/node_lifting_scaling.png``: risk against flow time for each alpha, risk against the
rescaled time ``alpha^2 t``, and the rates against alpha on log-log axes with the ``alpha^2`` reference slope.

Run: ``python examples/node_lifting_scaling.py [--quick] [--fixed-lr] [--threads T]``
"""

import argparse
import os
import time
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import make_friedman1  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from skflow import MeanFieldNODERegressor  # noqa: E402

FIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures")
TAU0 = 0.8  # tau * alpha^2 at large alpha (the package default, tau = 0.1 at alpha = 4, has 1.6)
TAU_MAX = 0.1  # cap at small alpha, where the stiffness no longer falls like alpha^2


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: 150 points, M=160, 100 iterations")
    p.add_argument("--fixed-lr", action="store_true",
                   help="one time step for every alpha (tau_0 / max(alpha)^2) instead of tau_0 / alpha^2")
    p.add_argument("--alphas", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0, 8.0])
    p.add_argument("--iters", type=int, default=None, help="iterations per run (default 600, quick 100)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    a = p.parse_args()
    if a.quick:
        a.n_samples, a.width, a.n_layers = 150, 160, 4
        a.iters = a.iters or 100
    else:
        a.n_samples, a.width, a.n_layers = 300, 384, 8
        a.iters = a.iters or 600
    return a


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


def main():
    a = parse()
    if a.threads:
        torch.set_num_threads(a.threads)
    t_start = time.perf_counter()
    X, y = make_friedman1(n_samples=a.n_samples, noise=0.5, random_state=0)
    X = StandardScaler().fit_transform(X)
    alphas = sorted(a.alphas)
    rows, models = [], {}
    rule = (f"{min(TAU_MAX, TAU0 / max(alphas) ** 2):g} (fixed)" if a.fixed_lr
            else f"min({TAU_MAX:g}, {TAU0:g} / alpha^2)")
    print(f"make_friedman1: N={a.n_samples}, S={a.n_layers}, M={a.width}, {a.iters} iterations per alpha, "
          f"tau = {rule}")
    head = (f"{'alpha':>6s} {'tau':>8s} {'R(0)':>7s} {'R(T)':>9s} {'T':>8s} {'ln2/t_1/2':>9s} {'rate avg':>9s} "
            f"{'PL(t=0)':>9s} {'PL min m':>9s} {'kernel 2a2l0/N':>14s} {'W2_COT':>7s} {'bound ok':>8s} {'s':>5s}")
    print(head)
    for alpha in alphas:
        tau = min(TAU_MAX, TAU0 / max(alphas) ** 2) if a.fixed_lr else min(TAU_MAX, TAU0 / alpha**2)
        est = MeanFieldNODERegressor(n_layers=a.n_layers, width=a.width, output_scale=alpha, learning_rate=tau,
                                     max_iter=a.iters, tol=0.0, early_stopping=False, device=a.device,
                                     random_state=a.seed)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning of a fixed budget
            est.fit(X, y)
        dt = time.perf_counter() - t0
        rep = est.convergence_report_
        t, R = est.flow_time_, est.loss_curve_
        row = dict(alpha=alpha, tau=tau, R0=R[0], RT=R[-1], T=t[-1], rate_half=half_rate(t, R),
                   rate_avg=rep["observed_rate"], pl0=est.pl_ratio_curve_[0], pl_min=est.pl_constant_,
                   kernel_rate=rep["kernel_rate"], cot=est.cot_distance_, bound=rep["pl_bound_holds"],
                   lambda0=est.kernel_lambda_min_, stop=est.stop_reason_, seconds=dt)
        rows.append(row)
        models[alpha] = est
        print(f"{alpha:6g} {tau:8.4g} {row['R0']:7.4f} {row['RT']:9.3e} {row['T']:8.4g} {row['rate_half']:9.4g} "
              f"{row['rate_avg']:9.4g} {row['pl0']:9.4g} {row['pl_min']:9.4g} {row['kernel_rate']:14.4g} "
              f"{row['cot']:7.3f} {str(row['bound']):>8s} {dt:5.1f}", flush=True)
    lam0 = rows[0]["lambda0"]
    print(f"\nlambda_0 = mean_k lambda_min(K1_k) at initialisation = {lam0:.3e} (independent of alpha: "
          f"{all(np.isclose(r['lambda0'], lam0) for r in rows)})")
    al = np.array(alphas)
    slopes = {}
    for key in ("rate_half", "rate_avg", "pl0", "pl_min"):
        v = np.array([r[key] for r in rows])
        ok = v > 0
        slopes[key] = float(np.polyfit(np.log(al[ok]), np.log(v[ok]), 1)[0]) if ok.sum() >= 2 else float("nan")
    print("log-log slopes against alpha (alpha^2 predicts 2): " +
          ", ".join(f"{k} {v:.2f}" for k, v in slopes.items()))

    # --------------------------------------------------------------------------------------- figure
    fig, ax = plt.subplots(1, 3, figsize=(17, 5.2))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(alphas)))
    for c, alpha in zip(colors, alphas):
        est = models[alpha]
        t, R = est.flow_time_, est.loss_curve_
        ax[0].loglog(np.maximum(t, t[1] / 2), R, color=c, lw=2, label=f"alpha={alpha:g}, tau={est.learning_rate:.3g}")
        ax[0].loglog(np.maximum(t, t[1] / 2), R[0] * np.exp(-est.pl_constant_ * t), color=c, ls=":", lw=1)
        ax[1].semilogy(alpha**2 * t, R, color=c, lw=2, label=f"alpha={alpha:g}")
    ax[0].set_xlabel("flow time t (the first point drawn at t_1/2)")
    ax[0].set_ylabel("training risk R(t)")
    ax[0].set_title("(a) risk vs flow time; dotted: P-L bound R(0) exp(-m t)")
    ax[0].set_ylim(min(r["RT"] for r in rows) / 3, max(r["R0"] for r in rows) * 2)
    ax[0].legend(fontsize=8)
    ax[1].set_xlabel("rescaled flow time alpha^2 t")
    ax[1].set_ylabel("training risk R(t)")
    ax[1].set_title("(b) risk vs alpha^2 t (equal if the rate were ~ alpha^2)")
    x_max = min(alpha**2 * models[alpha].flow_time_[-1] for alpha in alphas)
    ax[1].set_xlim(0, x_max)
    shown = [models[al_].loss_curve_[alpha_t <= x_max].min() for al_ in alphas
             for alpha_t in [al_**2 * models[al_].flow_time_]]
    ax[1].set_ylim(min(shown) / 1.5, max(r["R0"] for r in rows) * 1.5)
    ax[1].legend(fontsize=8)
    C = ax[2]
    for key, marker, label in (("rate_half", "o", "observed rate log 2 / t_half (risk halved)"),
                               ("rate_avg", "s", "observed rate, average -log(R(T)/R(0))/T"),
                               ("pl0", "^", "P-L ratio at t = 0"),
                               ("pl_min", "v", "P-L constant m (min along the run)")):
        v = np.array([r[key] for r in rows])
        C.loglog(al, v, marker + "-", label=f"{label} (slope {slopes[key]:.2f})")
    kr = np.array([r["kernel_rate"] for r in rows])
    if np.all(kr > 0):
        C.loglog(al, kr, "k.-", label="kernel rate 2 alpha^2 lambda_0 / N")
    ref = rows[len(rows) // 2]["pl0"] * (al / al[len(al) // 2]) ** 2
    C.loglog(al, ref, "k--", lw=1, label="alpha^2 reference slope")
    C.set_xticks(al)
    C.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    C.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    C.set_xlabel("output scale alpha")
    C.set_ylabel("rate (1 / flow time)")
    C.set_title("(c) convergence rate and P-L constant vs alpha")
    C.legend(fontsize=7)
    C.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"Lifting and scaling (Prop. II.6.1): make_friedman1, N={a.n_samples}, S={a.n_layers}, "
                 f"M={a.width}, {a.iters} full-batch iterations, "
                 f"tau = {rule}")
    fig.tight_layout()
    os.makedirs(FIG_DIR, exist_ok=True)
    path = os.path.join(FIG_DIR, "node_lifting_scaling.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"saved {path}  (total {time.perf_counter() - t_start:.0f}s)")


if __name__ == "__main__":
    main()
