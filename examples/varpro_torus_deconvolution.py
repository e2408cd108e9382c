"""
==========================================================================
VarPro for RBF networks on the torus: sparse deconvolution (Figs III.10-12)
==========================================================================

Thesis App. III.B. The student is the RBF network (Eq. III.50)

    F(x) = (1/M) sum_i u_i k([omega_i - x]),     k(z) = 8 exp(-|z| / 2),

with centres ``omega_i`` on the torus ``R^2 / 4 Z^2`` and ``[.]`` the projection on ``[-2, 2)^2``: fitting it is
a deconvolution, ``F = k * nu`` with ``nu = (1/M) sum_i u_i delta_{omega_i}``. The teacher has unit outer
weights and 4096 centres drawn from ``mu_gamma`` (a mixture around ``(-1, 0)`` and ``(1, 1)`` of the product
law ``prod_j 1 / (1 + gamma sin^2(pi z_j / 4))``); the inputs are standard Gaussian. VarPro (gradient descent
on the reduced risk, Eq. III.42) moves the student's centres towards the teacher's; with the unbiased
regulariser ``|u - 1|^2 / 2`` the teacher is the minimiser. The figures, in ``examples/figures/``:

* ``varpro_fig_III10_torus_teacher.png`` (Fig. III.10): left, the teacher's centres and, drawn by
  :class:`skflow.inspection.FeatureDistributionDisplay`, the learned centres (largest width, unbiased) with
  their uniform initialisation; right, the teacher signal on the fundamental domain;
* ``varpro_fig_III11_reduced_risk.png`` (Fig. III.11): the reduced risk per width, biased (left) and
  unbiased (right) regulariser, ``lambda = 1e-3``: it decreases monotonically;
* ``varpro_fig_III12_mmd_widths.png`` (Fig. III.12): the energy distance (Eq. III.49) of the centres to the
  teacher's, dashed biased and plain unbiased; the dotted lines are the distance of ``M`` i.i.d. samples of
  the teacher, the discretisation level a width can be expected to reach. The distance is the chordal one of
  the torus (:mod:`skflow.diagnostics.torus`): the flat-torus distance ``|[x - y]|`` is not of negative type
  in 2-d, and its "energy distance" is not a distance between measures (it can reach 0, or below, and rise
  again while the fit keeps improving).

By default the sizes are reduced to run on a CPU in a few minutes (N = 1024, a teacher of 2048, M in
{32, 128}, tau = 2^-8, 3000 steps: the flow time ~12 of the thesis's ~20 000 steps at 2^-10). ``--full``
uses the thesis's sizes (N = 4096, a teacher of 4096, M in {32, 128, 512, 1024}, tau = 2^-10, 20 000 steps,
6 runs): meant for a GPU. ``--quick`` is a smoke run at tiny sizes (seconds).

The estimator's ``learning_rate`` is the thesis's ``tau`` (its step is ``omega <- omega - M tau grad L``);
``tol=0`` and ``early_stopping=False`` run every step on all the data.

Run: ``python examples/varpro_torus_deconvolution.py [--quick | --full] [--device D] [--gamma G] [--runs R]
[--steps S]``
"""

# %%
import argparse
import os
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np

from skflow import VarProSHLRegressor
from skflow.datasets import make_torus_teacher, sample_torus_teacher
from skflow.diagnostics.torus import TorusEnergyDistance
from skflow.inspection import FeatureDistributionDisplay

FIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures")
PERIOD, LAM = 4.0, 1e-3
SIZES = {  # n_samples, n_teacher, widths, steps, tau, runs, n_snap
    "full": (4096, 4096, (32, 128, 512, 1024), 20000, 2.0 ** -10, 6, 40),
    "default": (1024, 2048, (32, 128), 3000, 2.0 ** -8, 1, 30),
    "quick": (256, 512, (16, 32), 60, 2.0 ** -8, 1, 4),
}

# %%
# Fitting, with a cache of runs
# -----------------------------
# Each (width, regulariser) is fitted ``runs`` times (seeds of the initialisation) on one data set; the
# reduced risk, the energy distance of every stored snapshot of the centres to the teacher's, and the model
# are kept.


class Experiment:
    def __init__(self, args):
        self.args = args
        self.X, self.y, self.teacher = make_torus_teacher(args.n_samples, args.n_teacher, gamma=args.gamma,
                                                          period=PERIOD, random_state=0)
        self.distance = TorusEnergyDistance(self.teacher, PERIOD)  # the teacher's self term computed once
        self.cache = {}

    def runs(self, width, reg):
        key = (width, reg)
        if key not in self.cache:
            self.cache[key] = [self.fit(width, reg, seed) for seed in range(self.args.runs)]
        return self.cache[key]

    def fit(self, width, reg, seed):
        a = self.args
        every = max(1, a.steps // a.n_snap)
        m = VarProSHLRegressor(width, feature_map="rbf", feature_domain="torus", torus_period=PERIOD,
                               rbf_kernel="laplace", alpha=LAM, regularization=reg, learning_rate=a.tau,
                               max_iter=a.steps, tol=0, early_stopping=False, store_features_every=every,
                               random_state=seed, device=a.device)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the ConvergenceWarning at max_iter: every step is meant to run
            m.fit(self.X, self.y)
        return dict(model=m, fit_time=time.perf_counter() - t0, reduced_risk=m.reduced_risk_curve_,
                    iters=np.arange(m.feature_history_.shape[0]) * every,
                    mmd_teacher=np.array([self.distance(h) for h in m.feature_history_]))

    def iid_level(self, width, draws=20):
        """Energy distance of ``width`` i.i.d. samples of the teacher law: mean over draws."""
        return float(np.mean([self.distance(sample_torus_teacher(width, self.args.gamma, PERIOD, random_state=s))
                              for s in range(draws)]))


def averaged(runs, key):
    n = min(len(r[key]) for r in runs)
    return np.mean([r[key][:n] for r in runs], axis=0)


def monotone(runs):
    return all(np.all(np.diff(r["reduced_risk"]) <= 1e-12 * r["reduced_risk"][0]) for r in runs)


def save(fig, name):
    fig.tight_layout()
    fig.savefig(os.path.join(FIG_DIR, name), dpi=120)
    plt.close(fig)


# %%
# Fig. III.10: the teacher, its signal and the learned centres
# ------------------------------------------------------------


def teacher_signal(exp, n_grid):
    """``Y(x) = (1/M_bar) sum_j k([omega_bar_j - x])`` on a grid of the fundamental domain (periodic in x)."""
    g = np.linspace(-PERIOD / 2, PERIOD / 2, n_grid)
    G = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    Z = G[:, None, :] - exp.teacher[None, :, :]
    Z -= PERIOD * np.round(Z / PERIOD)
    return g, (8.0 * np.exp(-0.5 * np.linalg.norm(Z, axis=-1))).mean(axis=1).reshape(n_grid, n_grid)


def figure_III10(exp):
    M = exp.args.widths[-1]
    m = exp.runs(M, "unbiased")[0]["model"]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.8))
    ax[0].scatter(exp.teacher[:, 0], exp.teacher[:, 1], s=2, c="C0", alpha=0.3, label="teacher $\\bar\\mu_\\gamma$")
    FeatureDistributionDisplay.from_estimator(m, ax=ax[0], line_kw=dict(ms=4, color="C3", label=f"learned, M={M}"))
    ax[0].set_xlim(-PERIOD / 2, PERIOD / 2), ax[0].set_ylim(-PERIOD / 2, PERIOD / 2), ax[0].set_aspect("equal")
    ax[0].legend(fontsize=7, loc="lower left"), ax[0].set_title("centres on $\\mathbb{R}^2 / 4\\mathbb{Z}^2$")
    g, Y = teacher_signal(exp, 81 if exp.args.size == "quick" else 161)
    im = ax[1].imshow(Y, origin="lower", extent=(g[0], g[-1], g[0], g[-1]), cmap="viridis")
    fig.colorbar(im, ax=ax[1], shrink=0.8)
    ax[1].set_title("teacher signal $Y = k \\star \\bar\\mu_\\gamma$"), ax[1].set_xlabel("$x_1$")
    ax[1].set_ylabel("$x_2$")
    fig.suptitle(f"Fig. III.10 — $\\gamma={exp.args.gamma:g}$, unbiased, $\\lambda=10^{{-3}}$, "
                 f"{exp.args.steps} steps")
    save(fig, "varpro_fig_III10_torus_teacher.png")


# %%
# Figs. III.11 and III.12: widths at ``lambda = 1e-3``
# ----------------------------------------------------


def figures_III11_III12(exp):
    widths = exp.args.widths
    fig11, ax11 = plt.subplots(1, 2, figsize=(11, 4))
    fig12, ax12 = plt.subplots(figsize=(6.5, 4.5))
    print("\nFigs III.11-III.12 (lambda=1e-3): width, regulariser, final reduced risk, energy distance to the "
          "teacher (M i.i.d. samples of the teacher), monotone, fit time")
    for k, M in enumerate(widths):
        c = plt.cm.plasma(k / max(1, len(widths)))
        level = exp.iid_level(M)
        ax12.axhline(level, color=c, ls=":", lw=1)
        for j, reg in enumerate(("biased", "unbiased")):
            rs = exp.runs(M, reg)
            L, it, ls = averaged(rs, "reduced_risk"), rs[0]["iters"], "--" if reg == "biased" else "-"
            mmd = averaged(rs, "mmd_teacher")
            ax11[j].plot(np.arange(1, len(L) + 1), L, color=c, label=f"M={M}")
            ax12.plot(it + 1, mmd, ls, color=c, label=f"M={M} {reg}")
            print(f"  M={M:5d} {reg:9s} L={L[-1]:.3e}  MMD={mmd[-1]:.4f} (iid {level:.4f})  "
                  f"monotone={monotone(rs)}  {np.mean([r['fit_time'] for r in rs]):.1f}s")
    for ax, title in zip(ax11, ("biased $f_b$", "unbiased $f_u$")):
        ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("iteration"), ax.set_ylabel("reduced risk")
        ax.set_title(title), ax.legend(fontsize=7)
    fig11.suptitle("Fig. III.11 — reduced risk of the torus RBF network, $\\lambda=10^{-3}$")
    save(fig11, "varpro_fig_III11_reduced_risk.png")
    ax12.set_xscale("log"), ax12.set_yscale("log"), ax12.set_xlabel("iteration")
    ax12.set_ylabel("energy distance to the teacher"), ax12.legend(fontsize=7)
    ax12.set_title("Fig. III.12 — dashed: biased, plain: unbiased, dotted: M i.i.d. teacher samples", fontsize=9)
    save(fig12, "varpro_fig_III12_mmd_widths.png")


def main(args):
    os.makedirs(FIG_DIR, exist_ok=True)
    t_start = time.perf_counter()
    exp = Experiment(args)
    print(f"torus RBF deconvolution: N={args.n_samples}, teacher={args.n_teacher}, gamma={args.gamma:g}, "
          f"widths={args.widths}, tau={args.tau:g}, steps={args.steps}, runs={args.runs}")
    figures_III11_III12(exp)
    figure_III10(exp)
    print(f"total time {time.perf_counter() - t_start:.0f}s; figures in {FIG_DIR}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="VarPro for RBF networks on the torus (Figs III.10-III.12).")
    parser.add_argument("--full", action="store_true", help="thesis sizes (GPU)")
    parser.add_argument("--quick", action="store_true", help="a smoke run at tiny sizes (seconds)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--gamma", type=float, default=100.0)
    parser.add_argument("--runs", type=int, default=None, help="independent runs averaged (thesis: 6)")
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    args.size = "full" if args.full else "quick" if args.quick else "default"
    runs, steps = args.runs, args.steps
    args.n_samples, args.n_teacher, args.widths, args.steps, args.tau, args.runs, args.n_snap = SIZES[args.size]
    args.runs, args.steps = runs or args.runs, steps or args.steps
    main(args)
