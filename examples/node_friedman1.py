"""
=====================================================================
Mean-field NODE on make_friedman1, with its convergence diagnostics
=====================================================================

The default :class:`skflow.MeanFieldNODERegressor` is a mean-field NODE with single-hidden-layer residuals
(thesis Ch. I, II.5): ``S = 8`` layers of ``M = 128`` particles, ``sigma = cos``, Gaussian features, lifting
and scaling with ``alpha = output_scale = 4`` (II.6), trained by the explicit Euler scheme of its
Conditional-Wasserstein gradient flow, with early stopping on a 20% validation split. Data:
``make_friedman1(n_samples=2000, noise=0.5, random_state=0)``, the first 1000 points to train, the last 1000 to
test, inputs standardised by a ``StandardScaler`` in a Pipeline.

Printed: test R^2 and the fitted diagnostics (P-L constant, kernel ``lambda_min`` at initialisation, COT
distance travelled, the convergence report). The figure ``examples/figures/node_friedman1.png`` shows

(a) :class:`skflow.inspection.ConvergenceDisplay`: the training risk against flow time (log scale) with
    the P-L bound ``R(0) exp(-m t)``,
    ``m = pl_constant_``, and the kernel-regime rate ``2 alpha^2 lambda_0 / N`` (finite width when ``M``
    exceeds the kernel points, else the infinite-width ``exact_kernel_lambda_min_``): the risk must stay
    below the P-L bound;
(b) the spectra of the layer kernels ``K1_k = Phi_k Phi_k^T / M`` at initialisation (Eq. II.38), drawn by
    :class:`skflow.inspection.KernelSpectrumDisplay` on a subsample of fewer than ``M`` points, against the
    closed-form infinite-width kernel ``exp(-rho^2 |x - y|^2 / 2) / 2`` (Cor. II.5.1), ``lambda_min``
    marked; the model's ``kernel_lambda_min_`` (exactly 0 when ``M`` is below the number of kernel points, as
    here: ``convergence_report_['kernel_note']`` says so, without a warning) is given below the panel, and the
    printed table compares ``lambda_min`` on subsamples of several sizes;
(c) the RMS particle displacement from the initialisation (``cot_displacement_curve_``, an upper bound of
    ``W2_COT(mu_t, mu_0)``, Def. I.2) with the exact ``cot_distance_`` of the returned (best-validation)
    particles;
(d) the inner weights ``w`` at initialisation and at the end: histogram of ``|w|`` over all layers, and
    the first two coordinates of one layer;
(e) the outer weights ``|u|`` (0 at initialisation: the NODE starts as the identity);
(f) test predictions against the targets.

Run: ``python examples/node_friedman1.py [--quick] [--threads T] [--seed S] [--device D]``
"""

# %%
import argparse
import os
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import make_friedman1
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skflow import MeanFieldNODERegressor
from skflow.diagnostics import kernel_lambda_min, lambda_min
from skflow.inspection import ConvergenceDisplay, KernelSpectrumDisplay

FIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures")

# %%
# Data and fit
# ------------
# The estimator keeps its defaults; ``--quick`` only caps the number of iterations. The warnings of the fit
# (a ConvergenceWarning when ``--quick``'s cap comes before early stopping) are recorded and printed with the
# diagnostics. ``M = 128`` is below the 800 kernel points, so the finite-width ``lambda_0`` is 0 by
# construction; the NODE says so in ``convergence_report_['kernel_note']``, without a warning.


def fit_friedman1(seed=0, device="auto", quick=False):
    """The default model in a scaling pipeline, fitted on the first 1000 points; returns the fit record."""
    X, y = make_friedman1(n_samples=2000, noise=0.5, random_state=0)
    Xtr, Xte, ytr, yte = X[:1000], X[1000:], y[:1000], y[1000:]
    model = MeanFieldNODERegressor(random_state=seed, device=device)
    if quick:
        model.set_params(max_iter=100)
    pipe = make_pipeline(StandardScaler(), model)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.fit(Xtr, ytr)
    return dict(pipe=pipe, model=model, Xtr=Xtr, Xte=Xte, ytr=ytr, yte=yte, warnings=caught,
                fit_time=time.perf_counter() - t0, r2_train=r2_score(ytr, pipe.predict(Xtr)),
                r2_test=r2_score(yte, pipe.predict(Xte)))


def training_split_size(model, n_train):
    """Training points the flow itself sees: those left after the validation hold-out of early stopping."""
    if not model.early_stopping:
        return n_train
    return n_train - max(1, int(round(model.validation_fraction * n_train)))


# %%
# Diagnostics
# -----------
# ``convergence_report_`` compares the observed rate with the P-L constant and the kernel rate
# ``2 alpha^2 lambda_0 / N`` of Thm. II.7; with ``M < N`` the finite-width ``lambda_0`` is 0, so the
# infinite-width rate is printed as well.


def print_diagnostics(fit):
    m, rep = fit["model"], fit["model"].convergence_report_
    N = training_split_size(m, len(fit["Xtr"]))
    exact_rate = 2 * m.output_scale**2 * m.exact_kernel_lambda_min_ / N
    print(f"MeanFieldNODERegressor defaults: S={m.n_layers}, M={m.width}, output_scale={m.output_scale}, "
          f"rho={m.feature_scale}, tau={m.learning_rate}, activation={m.activation}, "
          f"early_stopping={m.early_stopping}")
    print(f"make_friedman1(2000, noise=0.5): train {len(fit['Xtr'])} ({N} for the flow, the rest validation), "
          f"test {len(fit['Xte'])}")
    for w in fit["warnings"]:
        print(f"  warning: {w.category.__name__}: {str(w.message)[:150]}...")
    rows = [
        ("fit time (s)", fit["fit_time"]),
        ("iterations (stop reason)", f"{m.n_iter_} ({m.stop_reason_})"),
        ("flow time reached", rep.get("flow_time")),
        ("train R^2", fit["r2_train"]),
        ("test R^2", fit["r2_test"]),
        ("initial risk R(0)", rep.get("initial_risk")),
        ("final training risk", rep.get("final_risk")),
        ("best validation risk", getattr(m, "best_validation_risk_", float("nan"))),
        ("observed rate -log(R(T)/R(0))/T", rep.get("observed_rate")),
        ("P-L constant m (pl_constant_)", m.pl_constant_),
        ("P-L ratio at t = 0", m.pl_ratio_curve_[0]),
        ("P-L bound R(0)exp(-mt) holds", rep.get("pl_bound_holds")),
        ("kernel points (kernel_n_samples_)", m.kernel_n_samples_),
        ("lambda_0 finite width (kernel_lambda_min_)", m.kernel_lambda_min_),
        ("lambda_0 infinite width (exact_...)", m.exact_kernel_lambda_min_),
        ("kernel rate 2 alpha^2 lambda_0 / N", rep.get("kernel_rate")),
        ("same with exact lambda_0", exact_rate),
        ("W2_COT to init (cot_distance_)", m.cot_distance_),
        ("max RMS displacement", rep.get("max_displacement")),
        ("local P-L condition R0 < m r^2/4", rep.get("local_pl_condition")),
    ]
    print(f"\n{'quantity':38s} {'value':>14s}")
    for name, v in rows:
        s = f"{v:14.4g}" if isinstance(v, (float, np.floating)) else f"{str(v):>14s}"
        print(f"{name:38s} {s}")
    return exact_rate


# %%
# (a) Training risk against the P-L bound
# ---------------------------------------


def plot_risk(ax, pipe, exact_rate, r2_test):
    """``ConvergenceDisplay`` of the fit, with the kernel-regime rates drawn on its axes."""
    disp = ConvergenceDisplay.from_estimator(pipe, ax=ax, show_pl_ratio=False)
    m, t, R = pipe[-1], disp.flow_time, disp.risk
    k_rate = m.convergence_report_.get("kernel_rate", 0.0)
    if k_rate > 0:
        ax.plot(t, R[0] * np.exp(-k_rate * t), "g:", label=f"kernel rate 2a^2 l0/N = {k_rate:.3g}")
    if np.isfinite(exact_rate) and exact_rate > 0:
        ax.plot(t, R[0] * np.exp(-exact_rate * t), "m:",
                label=f"infinite-width kernel rate 2a^2 l0/N = {exact_rate:.2g}")
    low = R.min() if disp.val_risk is None else min(R.min(), disp.val_risk.min())
    ax.set_ylim(low / 2, R[0] * 1.5)
    ax.set_xlabel("flow time t = tau x iteration")
    ax.set_ylabel("risk (standardised targets)")
    ax.set_title(f"(a) training risk; test R$^2$ = {r2_test:.3f}")
    ax.legend(fontsize=8)
    return disp


# %%
# (b) Layer kernels at initialisation
# -----------------------------------
# ``feature_kernel_matrices`` returns the finite-width ``K1_k`` on scaled inputs. At initialisation every
# layer sees the lifted inputs ``(x, 0)``, whose pairwise distances are those of ``x``, so the closed-form
# limit is :func:`skflow.diagnostics.kernel_lambda_min` on the scaled inputs themselves.


def layer_lambdas(m, Xs):
    """Per-layer ``lambda_min(K1_k)`` at initialisation on the (scaled) rows ``Xs``, and the closed form."""
    finite = np.array([lambda_min(K) for K in m.feature_kernel_matrices(Xs, initial=True)])
    return finite, kernel_lambda_min(Xs, m.feature_init, m.feature_scale, m.nu)


def kernel_table(m, Xsc):
    """``(points, mean_k lambda_min(K1_k), closed form)`` on seeded subsamples of the scaled inputs."""
    perm = np.random.RandomState(1).permutation(len(Xsc))
    table = []
    for n_sub in sorted({16, 64, min(m.width // 2, 256)}):  # M = 128: 16 and 64 points
        finite, exact = layer_lambdas(m, Xsc[perm[:n_sub]])
        table.append((n_sub, finite.mean(), exact))
    return table


def plot_layer_kernels(ax, pipe, Xtr):
    """``KernelSpectrumDisplay`` of the layer kernels on a subsample of fewer than ``M`` points."""
    m = pipe[-1]
    n_sub = min(m.width // 2, 256)
    disp = KernelSpectrumDisplay.from_estimator(pipe, Xtr, max_samples=n_sub, ax=ax)
    ax.set_xlabel(f"eigenvalue index ({n_sub} points)\nfitted on {m.kernel_n_samples_} points: mean layer "
                  f"lambda_min (kernel_lambda_min_) = {m.kernel_lambda_min_:.2e}, "
                  f"exact_kernel_lambda_min_ = {m.exact_kernel_lambda_min_:.2e}", fontsize=8)
    ax.set_title("(b) layer kernel spectra at initialisation")
    return disp


# %%
# (c) Conditional OT distance travelled
# -------------------------------------
# With early stopping the returned particles are those of the best validation risk, measured after the
# step of that iteration: the exact ``cot_distance_`` is drawn there.


def plot_cot(ax, m):
    t = m.flow_time_
    ax.plot(t, m.cot_displacement_curve_, label="RMS displacement (upper bound of W2_COT)")
    if "val_risk" in m.history_ and m.early_stopping:
        t_best = t[int(np.argmin(m.history_["val_risk"]))] + m.learning_rate
        ax.axvline(t_best, color="gray", ls=":", label="best validation (returned particles)")
    else:
        t_best = t[-1] + m.learning_rate
    ax.plot([t_best], [m.cot_distance_], "r*", ms=14,
            label=f"exact W2_COT (cot_distance_) = {m.cot_distance_:.3g}")
    ax.set_xlabel("flow time t")
    ax.set_ylabel("distance to the initialisation")
    ax.set_title("(c) Conditional OT distance travelled")
    ax.legend(fontsize=8)


# %%
# (d), (e) The particles: inner weights ``w`` and outer weights ``u``
# -------------------------------------------------------------------


def plot_inner_weights(ax, m, layer=0):
    W0, W1 = m.W_init_, m.W_
    n0, n1 = np.linalg.norm(W0, axis=-1).ravel(), np.linalg.norm(W1, axis=-1).ravel()
    bins = np.linspace(0, max(n0.max(), n1.max()), 50)
    ax.hist(n0, bins=bins, alpha=0.5, label="initial |w|")
    ax.hist(n1, bins=bins, histtype="step", lw=2, label="final |w|")
    ax.set_xlabel("|w| (all layers)")
    ax.set_title(f"(d) inner weights: mean |w - w0| = {np.linalg.norm(W1 - W0, axis=-1).mean():.3g}")
    ins = ax.inset_axes([0.62, 0.45, 0.36, 0.5])
    ins.scatter(W0[layer, :, 0], W0[layer, :, 1], s=4, alpha=0.6, label="init")
    ins.scatter(W1[layer, :, 0], W1[layer, :, 1], s=4, alpha=0.6, label="final")
    ins.set_title(f"layer {layer}: (w_1, w_2)", fontsize=7)
    ins.tick_params(labelsize=6)
    ins.legend(fontsize=6, markerscale=2)
    ax.legend(fontsize=8, loc="upper left")


def plot_outer_weights(ax, m):
    un = np.linalg.norm(m.U_, axis=-1)
    for k in range(m.n_layers):
        ax.hist(un[k], bins=40, histtype="step", label=f"layer {k}")
    ax.set_xlabel("|u| at the end (0 at initialisation)")
    ax.set_title("(e) outer weights")
    ax.legend(fontsize=7, ncol=2)


# %%
# (f) Test predictions
# --------------------


def plot_predictions(ax, fit):
    yte = fit["yte"]
    ax.scatter(yte, fit["pipe"].predict(fit["Xte"]), s=5, alpha=0.5)
    ax.plot([yte.min(), yte.max()], [yte.min(), yte.max()], "k--", lw=1)
    ax.set_xlabel("test target")
    ax.set_ylabel("prediction")
    ax.set_title(f"(f) test set, R$^2$ = {fit['r2_test']:.3f}")


# %%
# The figure
# ----------


def make_figure(fit, exact_rate):
    m = fit["model"]
    fig, ax = plt.subplots(2, 3, figsize=(16, 9.5))
    plot_risk(ax[0, 0], fit["pipe"], exact_rate, fit["r2_test"])
    plot_layer_kernels(ax[0, 1], fit["pipe"], fit["Xtr"])
    table = kernel_table(m, fit["pipe"][0].transform(fit["Xtr"]))
    plot_cot(ax[0, 2], m)
    plot_inner_weights(ax[1, 0], m)
    plot_outer_weights(ax[1, 1], m)
    plot_predictions(ax[1, 2], fit)
    fig.suptitle(f"MeanFieldNODERegressor defaults on make_friedman1 (S={m.n_layers}, M={m.width}, "
                 f"alpha={m.output_scale}, tau={m.learning_rate}; {m.n_iter_} iterations, {m.stop_reason_})")
    fig.tight_layout()
    os.makedirs(FIG_DIR, exist_ok=True)
    path = os.path.join(FIG_DIR, "node_friedman1.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path, table


def main(quick=False, threads=None, seed=0, device="auto"):
    if threads:
        torch.set_num_threads(threads)
    t_start = time.perf_counter()
    fit = fit_friedman1(seed, device, quick)
    exact_rate = print_diagnostics(fit)
    path, table = make_figure(fit, exact_rate)
    head = f"mean_k lambda_min(K1_k), M={fit['model'].width}"
    print(f"\n{'kernel points':>13s} {head:>30s} {'closed form (M = inf)':>22s}")
    for n_sub, finite_mean, exact in table:
        print(f"{n_sub:13d} {finite_mean:30.3e} {exact:22.3e}")
    print(f"\nsaved {path}  (total {time.perf_counter() - t_start:.0f}s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The default MeanFieldNODERegressor on make_friedman1.")
    parser.add_argument("--quick", action="store_true", help="a smoke run: at most 100 iterations")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    main(**vars(parser.parse_args()))
