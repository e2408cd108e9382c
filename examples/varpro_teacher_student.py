"""
=====================================================================
VarPro on the S^1 teacher-student problem (thesis Figs III.2-III.7)
=====================================================================

Thesis §III.6.1. A student SHL ``F(x) = (1/M) sum_i u_i ReLU(omega_i . x)`` with features on the circle
learns the teacher ``mu_gamma`` (Eq. III.40) by gradient descent on the reduced risk (VarPro, Eq. III.42).
Its feature distribution is compared with the teacher (energy-distance MMD, Eq. III.49) and with the
solution of the weighted ultra-fast diffusion (Eq. III.35, r = 2) computed on a grid with LSODA, the
``lambda -> 0`` limit of the flow (Thm. III.5). The figures, in ``examples/figures/``:

* ``varpro_fig_III2_diffusion.png`` (Fig. III.2): the density of the diffusion and, drawn by
  :class:`skflow.inspection.FeatureDistributionDisplay`, a histogram density of the VarPro particles at a few
  times, both spreading from the uniform initialisation towards the teacher;
* ``varpro_fig_III3_reduced_risk.png`` (Fig. III.3): the reduced risk per width, for the biased and the
  unbiased regulariser: it decreases monotonically;
* ``varpro_fig_III4_mmd_widths.png`` (Fig. III.4): MMD to the teacher and to the diffusion per width;
* ``varpro_fig_III5_mmd_lambda.png`` (Fig. III.5): the same against the ridge strength ``lambda`` at the
  largest width: the particles follow the diffusion better as ``lambda -> 0``;
* ``varpro_fig_III7_two_timescale.png`` (Fig. III.7): VarPro against two-timescale gradient descent
  (Eq. III.44), which needs ``tau << lambda`` (Rem. III.6.1) and falls behind at small ``lambda``.

By default the sizes are reduced to run on a CPU in a few minutes (N = 1024, M in {32, 128}, one run per
setting, tau = 2^-6 so that 1000 steps reach the flow time t ~ 16 of the thesis's 32000 steps at 2^-10).
``--full`` uses the thesis's sizes (N = 4096, M in {32, 128, 512, 1024}, tau = 2^-10, 32000 steps, 6 runs):
meant for a GPU. ``--quick`` is a smoke run at tiny sizes.

Run: ``python examples/varpro_teacher_student.py [--quick | --full] [--device D] [--gamma G] [--runs R]
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
from skflow.datasets import make_teacher_student, teacher_density
from skflow.diagnostics import energy_distance
from skflow.diffusion import ultrafast_diffusion_s1
from skflow.inspection import FeatureDistributionDisplay

FIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures")
TAU7 = 2.0 ** -10  # the thesis's step in Fig. III.7: two-timescale GD needs tau << lambda (Rem. III.6.1)
SIZES = {  # n_samples, widths, steps, tau, runs, tt_steps, n_snap, teacher_width, n_grid
    "full": (4096, (32, 128, 512, 1024), 32000, 2.0 ** -10, 6, 32000, 64, 4096, 1024),
    "quick": (256, (16, 32), 100, 2.0 ** -6, 1, 200, 5, 512, 128),
    "default": (1024, (32, 128), 1000, 2.0 ** -6, 1, 8000, 20, 4096, 512),
}

# %%
# The ultra-fast diffusion and the particle clouds
# ------------------------------------------------


def circle(theta):
    return np.stack([np.cos(theta), np.sin(theta)], axis=1)


class Diffusion:
    """Ultra-fast diffusion (Eq. III.35) on a grid, solved once per set of snapshot times."""

    def __init__(self, gamma, n_grid):
        self.gamma, self.n_grid, self.cache = gamma, n_grid, {}

    def at(self, times):
        key = tuple(np.round(times, 12))
        if key not in self.cache:
            # f(u) = |u|^2/2 (or |u - 1|^2/2): f_scale = 1/2 in the units of Eq. III.35
            self.cache[key] = ultrafast_diffusion_s1(lambda t: teacher_density(t, self.gamma), times,
                                                     n_grid=self.n_grid, f_scale=0.5)
        return self.cache[key]

    def mmd_curve(self, history, times):
        theta, dens = self.at(times)
        pts = circle(theta)
        return np.array([energy_distance(h, pts, weights_b=d) for h, d in zip(history, dens)])


# %%
# Fitting, with a cache of runs
# -----------------------------
# The figures share many settings (width, ``lambda``, regulariser, solver, step, number of steps): each is
# fitted once (``runs`` seeds) and its reduced risk, MMD curves and final exact reduced risk are kept.


class Experiment:
    def __init__(self, args):
        self.args = args
        self.X, self.y, self.teacher = make_teacher_student(args.n_samples, teacher_width=args.teacher_width,
                                                            gamma=args.gamma, return_teacher=True, random_state=0)
        self.diffusion = Diffusion(args.gamma, args.n_grid)
        self.cache = {}

    def runs(self, width, lam, reg, solver="varpro", tau=None, steps=None):
        key = (width, lam, reg, solver, tau or self.args.tau, steps or self.args.steps)
        if key not in self.cache:
            self.cache[key] = [self.fit(*key, seed) for seed in range(self.args.runs)]
        return self.cache[key]

    def fit(self, width, lam, reg, solver, tau, steps, seed):
        every = max(1, steps // self.args.n_snap)
        m = VarProSHLRegressor(width, feature_domain="sphere", alpha=lam, regularization=reg, solver=solver,
                               learning_rate=tau, max_iter=steps, tol=0, early_stopping=False,
                               store_features_every=every, random_state=seed, device=self.args.device)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # divergence of two-timescale GD at large tau / lambda is a result here
            m.fit(self.X, self.y)
        fit_time = time.perf_counter() - t0
        hist = m.feature_history_
        iters = np.arange(hist.shape[0]) * every
        return dict(reduced_risk=m.reduced_risk_curve_, iters=iters, fit_time=fit_time, model=m,
                    mmd_teacher=np.array([energy_distance(h, self.teacher) for h in hist]),
                    mmd_diffusion=self.diffusion.mmd_curve(hist, iters * tau), final_L=m.reduced_risk(self.X, self.y))


def averaged(runs, key):
    n = min(len(r[key]) for r in runs)
    return np.mean([r[key][:n] for r in runs], axis=0)


def monotone(runs):
    return all(np.all(np.diff(r["reduced_risk"]) <= 1e-12 * r["reduced_risk"][0]) for r in runs)


def log_axes(axes, titles, fontsize=7, xlabel="iteration"):
    for ax, title in zip(axes, titles):
        ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel(xlabel), ax.set_title(title)
        ax.legend(fontsize=fontsize)


def save(fig, name):
    fig.tight_layout()
    fig.savefig(os.path.join(FIG_DIR, name), dpi=120)
    plt.close(fig)


# %%
# Fig. III.2: the diffusion against the particles
# -----------------------------------------------
# The particles are drawn by :class:`skflow.inspection.FeatureDistributionDisplay`: a histogram density of
# their angles at each snapshot, against the teacher density. The number of bins grows with ``M`` (the noise
# of a histogram of ``M`` points in bins of width ``h`` grows like ``1/sqrt(M h)``).


def plot_particles_III2(ax, hist, idx, times, gamma):
    """One FeatureDistributionDisplay per snapshot on ``ax``; the teacher is the reference of the last one."""
    grid, bins = np.linspace(-np.pi, np.pi, 721), int(np.clip(hist.shape[1] // 4, 12, 72))
    for j, (i, t) in enumerate(zip(idx, times)):
        ref = (grid, teacher_density(grid, gamma)) if j == len(idx) - 1 else None
        disp = FeatureDistributionDisplay(hist[i], True, reference=ref, reference_label="teacher $\\mu_\\gamma$")
        disp.plot(ax=ax, bins=bins, line_kw=dict(color=plt.cm.viridis(j / max(1, len(idx) - 1)), lw=1.5,
                                                 label=f"t = {t:.2f}"))
    return disp


def figure_III2(exp):
    a, M = exp.args, exp.args.widths[-1]
    m = exp.runs(M, 1e-4, "biased")[0]["model"]
    hist = m.feature_history_
    idx = np.unique(np.linspace(0, hist.shape[0] - 1, 5).astype(int))
    times = idx * m.store_features_every * a.tau
    theta, dens = exp.diffusion.at(times)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for j, t in enumerate(times):
        axes[0].plot(theta, dens[j], color=plt.cm.viridis(j / max(1, len(idx) - 1)), label=f"t = {t:.2f}")
    grid = np.linspace(-np.pi, np.pi, 721)
    axes[0].plot(grid, teacher_density(grid, a.gamma), "k--", lw=1, label="teacher $\\mu_\\gamma$")
    plot_particles_III2(axes[1], hist, idx, times, a.gamma)
    for ax, title in zip(axes, ["ultra-fast diffusion (Eq. III.35, LSODA)", f"VarPro particles, M={M}"]):
        ax.set_yscale("log"), ax.set_xlabel("$\\theta$"), ax.set_title(title), ax.set_ylim(1e-3, 10)
    axes[0].set_ylabel("density"), axes[0].legend(fontsize=7), axes[1].legend(fontsize=7)
    fig.suptitle(f"Fig. III.2 — biased, $\\lambda=10^{{-4}}$, $\\gamma={a.gamma:g}$")
    save(fig, "varpro_fig_III2_diffusion.png")


# %%
# Figs. III.3 and III.4: widths at ``lambda = 1e-3``
# --------------------------------------------------


def figures_III3_III4(exp):
    widths = exp.args.widths
    fig3, ax3 = plt.subplots(1, 2, figsize=(11, 4))
    fig4, ax4 = plt.subplots(1, 2, figsize=(11, 4))
    print("\nFigs III.3-III.4 (lambda=1e-3): width, regulariser, final reduced risk, MMD to teacher, "
          "MMD to diffusion, monotone")
    for k, M in enumerate(widths):
        c = plt.cm.plasma(k / max(1, len(widths)))
        for j, reg in enumerate(("biased", "unbiased")):
            rs = exp.runs(M, 1e-3, reg)
            L, it, ls = averaged(rs, "reduced_risk"), rs[0]["iters"], "--" if reg == "biased" else "-"
            ax3[j].plot(np.arange(1, len(L) + 1), L, color=c, label=f"M={M}")
            ax4[0].plot(it + 1, averaged(rs, "mmd_teacher"), ls, color=c, label=f"M={M} {reg}")
            ax4[1].plot(it + 1, averaged(rs, "mmd_diffusion"), ls, color=c, label=f"M={M} {reg}")
            print(f"  M={M:5d} {reg:9s} L={L[-1]:.3e}  MMD_teacher={averaged(rs, 'mmd_teacher')[-1]:.4f}  "
                  f"MMD_diffusion={averaged(rs, 'mmd_diffusion')[-1]:.4f}  monotone={monotone(rs)}")
    log_axes(ax3, ("biased $f_b$", "unbiased $f_u$"))
    for ax in ax3:
        ax.set_ylabel("reduced risk")
    fig3.suptitle("Fig. III.3 — reduced risk, $\\lambda=10^{-3}$")
    save(fig3, "varpro_fig_III3_reduced_risk.png")
    log_axes(ax4, ("MMD to teacher", "MMD to ultra-fast diffusion"))
    fig4.suptitle("Fig. III.4 — dashed: biased, plain: unbiased, $\\lambda=10^{-3}$")
    save(fig4, "varpro_fig_III4_mmd_widths.png")


# %%
# Fig. III.5: ``lambda`` sweep at the largest width
# -------------------------------------------------


def figure_III5(exp):
    M = exp.args.widths[-1]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    print(f"\nFig III.5 (M={M}): lambda, regulariser, MMD to teacher, MMD to diffusion, lambda/||K||")
    for k, lam in enumerate((1e-1, 1e-2, 1e-3, 1e-4)):
        c = plt.cm.viridis(k / 4)
        for reg in ("biased", "unbiased"):
            rs = exp.runs(M, lam, reg)
            it, ls = rs[0]["iters"], "--" if reg == "biased" else "-"
            ax[0].plot(it + 1, averaged(rs, "mmd_teacher"), ls, color=c, label=f"$\\lambda$={lam:g} {reg}")
            ax[1].plot(it + 1, averaged(rs, "mmd_diffusion"), ls, color=c, label=f"$\\lambda$={lam:g} {reg}")
            print(f"  lambda={lam:7.0e} {reg:9s} MMD_teacher={averaged(rs, 'mmd_teacher')[-1]:.4f}  "
                  f"MMD_diffusion={averaged(rs, 'mmd_diffusion')[-1]:.4f}  "
                  f"lambda/||K||={rs[0]['model'].regularization_ratio_:.2e}")
    log_axes(ax, ("MMD to teacher", "MMD to ultra-fast diffusion"), fontsize=6)
    fig.suptitle(f"Fig. III.5 — M={M}, dashed: biased, plain: unbiased")
    save(fig, "varpro_fig_III5_mmd_lambda.png")


# %%
# Fig. III.7: VarPro against two-timescale gradient descent
# ---------------------------------------------------------
# Both at the thesis's step ``tau = 2^-10``, unbiased regulariser; the printed ``L`` is the exact reduced
# risk of the final features.


def plot_III7_width(axrow, exp, lam, M, color):
    finals = {}
    for solver, ls in (("varpro", "-"), ("two-timescale", "--")):
        rs = exp.runs(M, lam, "unbiased", solver, TAU7, exp.args.tt_steps)
        it, L = rs[0]["iters"], averaged(rs, "reduced_risk")
        axrow[0].plot(np.arange(1, len(L) + 1), L, ls, color=color, label=f"M={M} {solver}")
        axrow[1].plot(it + 1, averaged(rs, "mmd_teacher"), ls, color=color)
        axrow[2].plot(it + 1, averaged(rs, "mmd_diffusion"), ls, color=color)
        finals[solver] = (np.mean([x["final_L"] for x in rs]), averaged(rs, "mmd_teacher")[-1],
                          np.mean([x["fit_time"] for x in rs]))
    vp, tt = finals["varpro"], finals["two-timescale"]
    print(f"  lambda={lam:7.0e} M={M:5d}  VarPro L={vp[0]:.3e} MMD={vp[1]:.4f} ({vp[2]:.1f}s)   "
          f"two-timescale L={tt[0]:.3e} MMD={tt[1]:.4f} ({tt[2]:.1f}s)")


def figure_III7(exp):
    lams, widths = (1e-1, 1e-2, 1e-3), exp.args.widths
    fig, ax = plt.subplots(len(lams), 3, figsize=(14, 3.3 * len(lams)))
    print(f"\nFig III.7 (unbiased, tau=2^-10, {exp.args.tt_steps} steps): exact reduced risk L(omega) at the end")
    for r, lam in enumerate(lams):
        for k, M in enumerate(widths):
            plot_III7_width(ax[r], exp, lam, M, plt.cm.plasma(k / max(1, len(widths))))
        ax[r, 0].set_ylabel(f"$\\lambda$={lam:g}")
        for j, title in enumerate(("risk (R/$\\lambda$)", "MMD to teacher", "MMD to diffusion")):
            ax[r, j].set_xscale("log"), ax[r, j].set_yscale("log"), ax[r, j].set_title(title, fontsize=9)
    ax[0, 0].legend(fontsize=6)
    fig.suptitle("Fig. III.7 — plain: VarPro, dashed: two-timescale GD (unbiased)")
    save(fig, "varpro_fig_III7_two_timescale.png")


# %%
# Summary numbers
# ---------------


def print_summary(exp):
    a = exp.args
    M = 128 if 128 in a.widths else a.widths[-1]
    rs = exp.runs(M, 1e-3, "unbiased")
    print(f"\nSummary (lambda=1e-3, gamma={a.gamma:g}, unbiased, M={M}, {a.steps} steps at tau={a.tau:g}): "
          f"reduced risk monotone={monotone(rs)}, final MMD to teacher={averaged(rs, 'mmd_teacher')[-1]:.4f}")
    vp = exp.runs(M, 1e-3, "unbiased", "varpro", TAU7, a.tt_steps)
    tt = exp.runs(M, 1e-3, "unbiased", "two-timescale", TAU7, a.tt_steps)
    print(f"  same lambda, {a.tt_steps} steps at tau=2^-10: VarPro L={np.mean([r['final_L'] for r in vp]):.4e}  "
          f"two-timescale L={np.mean([r['final_L'] for r in tt]):.4e}")


def main(args):
    os.makedirs(FIG_DIR, exist_ok=True)
    exp = Experiment(args)
    t_start = time.perf_counter()
    print(f"S^1 teacher-student: N={args.n_samples}, gamma={args.gamma}, widths={args.widths}, tau={args.tau:g}, "
          f"steps={args.steps}, runs={args.runs}")
    figure_III2(exp)
    figures_III3_III4(exp)
    figure_III5(exp)
    figure_III7(exp)
    print_summary(exp)
    print(f"total time {time.perf_counter() - t_start:.0f}s; figures in {FIG_DIR}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="VarPro on the S^1 teacher-student problem (Figs III.2-III.7).")
    parser.add_argument("--full", action="store_true", help="thesis sizes (GPU)")
    parser.add_argument("--quick", action="store_true", help="a smoke run at tiny sizes (seconds)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--gamma", type=float, default=100.0)
    parser.add_argument("--runs", type=int, default=None, help="independent runs averaged (thesis: 6)")
    parser.add_argument("--steps", type=int, default=None, help="VarPro steps for Figs III.2-III.5")
    args = parser.parse_args()
    size = "full" if args.full else "quick" if args.quick else "default"
    runs, steps = args.runs, args.steps
    (args.n_samples, args.widths, args.steps, args.tau, args.runs, args.tt_steps, args.n_snap, args.teacher_width,
     args.n_grid) = SIZES[size]
    args.runs, args.steps = runs or args.runs, steps or args.steps
    main(args)
