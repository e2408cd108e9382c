"""VarPro on the S^1 teacher-student problem of thesis §III.6.1: Figs III.2, III.3, III.4, III.5 and III.7.

A student SHL ``F(x) = (1/M) sum_i u_i ReLU(omega_i . x)`` with features on the circle learns the teacher
``mu_gamma`` (Eq. III.40) by gradient descent on the reduced risk (VarPro, Eq. III.42); its feature
distribution is compared with the teacher (energy-distance MMD, Eq. III.49) and with the solution of the
weighted ultra-fast diffusion (Eq. III.35, r = 2) computed on a grid with LSODA, the ``lambda -> 0`` limit
of the flow (Thm. III.5). Fig. III.7 compares VarPro with two-timescale gradient descent (Eq. III.44).

By default the sizes are reduced to run on a CPU in a few minutes (N = 1024, M in {32, 128}, one run per
setting, tau = 2^-6 so that 1000 steps reach the flow time t ~ 16 of the thesis's 32000 steps at 2^-10).
``--full`` uses the thesis's sizes (N = 4096, M in {32, 128, 512, 1024}, tau = 2^-10, 32000 steps, 6 runs):
meant for a GPU. Figures go to ``examples/figures/``.

Run: ``python examples/varpro_teacher_student.py [--full] [--device cuda] [--runs R] [--steps S]``
"""

import argparse
import os
import time
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from skflow import VarProSHLRegressor  # noqa: E402
from skflow.datasets import make_teacher_student, teacher_density  # noqa: E402
from skflow.flows.diffusion import ultrafast_diffusion_s1  # noqa: E402
from skflow.flows.mmd import energy_distance  # noqa: E402

FIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures")


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="thesis sizes (GPU)")
    p.add_argument("--quick", action="store_true", help="a smoke run at tiny sizes (seconds)")
    p.add_argument("--device", default="auto")
    p.add_argument("--gamma", type=float, default=100.0)
    p.add_argument("--runs", type=int, default=None, help="independent runs averaged (thesis: 6)")
    p.add_argument("--steps", type=int, default=None, help="VarPro steps for Figs III.2-III.5")
    a = p.parse_args()
    runs, steps = a.runs, a.steps
    if a.full:
        a.n_samples, a.widths, a.steps, a.tau, a.runs = 4096, (32, 128, 512, 1024), 32000, 2.0 ** -10, 6
        a.tt_steps, a.n_snap, a.teacher_width, a.n_grid = 32000, 64, 4096, 1024
    elif a.quick:
        a.n_samples, a.widths, a.steps, a.tau, a.runs = 256, (16, 32), 100, 2.0 ** -6, 1
        a.tt_steps, a.n_snap, a.teacher_width, a.n_grid = 200, 5, 512, 128
    else:
        a.n_samples, a.widths, a.steps, a.tau, a.runs = 1024, (32, 128), 1000, 2.0 ** -6, 1
        a.tt_steps, a.n_snap, a.teacher_width, a.n_grid = 8000, 20, 4096, 512
    a.runs = runs or a.runs
    a.steps = steps or a.steps
    return a


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
            theta, dens = ultrafast_diffusion_s1(lambda t: teacher_density(t, self.gamma), times,
                                                 n_grid=self.n_grid, f_scale=0.5)
            self.cache[key] = (theta, dens)
        return self.cache[key]

    def mmd_curve(self, history, times):
        theta, dens = self.at(times)
        pts = circle(theta)
        return np.array([energy_distance(h, pts, weights_b=d) for h, d in zip(history, dens)])


def run(X, y, teacher, width, lam, regularization, solver, tau, steps, n_snap, seed, device, diffusion):
    every = max(1, steps // n_snap)
    m = VarProSHLRegressor(width, feature_domain="sphere", alpha=lam, regularization=regularization, solver=solver,
                           learning_rate=tau, max_iter=steps, tol=0, store_features_every=every,
                           random_state=seed, device=device)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # divergence of two-timescale GD at large tau / lambda is a result here
        m.fit(X, y)
    fit_time = time.perf_counter() - t0
    hist = m.feature_history_
    snap_iters = np.arange(hist.shape[0]) * every
    times = snap_iters * tau
    return dict(
        reduced_risk=m.reduced_risk_curve_, iters=snap_iters, fit_time=fit_time,
        mmd_teacher=np.array([energy_distance(h, teacher) for h in hist]),
        mmd_diffusion=diffusion.mmd_curve(hist, times), final_L=m.reduced_risk(X, y), model=m,
    )


def averaged(runs, key):
    n = min(len(r[key]) for r in runs)
    return np.mean([r[key][:n] for r in runs], axis=0)


def main():
    a = parse()
    os.makedirs(FIG_DIR, exist_ok=True)
    X, y, teacher = make_teacher_student(a.n_samples, teacher_width=a.teacher_width, gamma=a.gamma,
                                         return_teacher=True, random_state=0)
    diffusion = Diffusion(a.gamma, a.n_grid)
    t_start = time.perf_counter()
    cache = {}

    def get(width, lam, reg, solver="varpro", tau=a.tau, steps=a.steps):
        key = (width, lam, reg, solver, tau, steps)
        if key not in cache:
            cache[key] = [run(X, y, teacher, width, lam, reg, solver, tau, steps, a.n_snap, s, a.device, diffusion)
                          for s in range(a.runs)]
        return cache[key]

    print(f"S^1 teacher-student: N={a.n_samples}, gamma={a.gamma}, widths={a.widths}, tau={a.tau:g}, "
          f"steps={a.steps}, runs={a.runs}")

    # ---------------------------------------------------------------- Fig III.2: diffusion vs particles
    M2 = a.widths[-1]
    rs = get(M2, 1e-4, "biased")
    m = rs[0]["model"]
    hist, every = m.feature_history_, m.store_features_every
    idx = np.unique(np.linspace(0, hist.shape[0] - 1, 5).astype(int))
    times = idx * every * a.tau
    theta, dens = diffusion.at(times)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    grid = np.linspace(-np.pi, np.pi, 721)
    for j, (i, t) in enumerate(zip(idx, times)):
        c = plt.cm.viridis(j / max(1, len(idx) - 1))
        axes[0].plot(theta, dens[j], color=c, label=f"t = {t:.2f}")
        ang = np.arctan2(hist[i][:, 1], hist[i][:, 0])
        # periodic Gaussian smoothing of the empirical measure: sigma = 0.03 as in the thesis with M = 1024,
        # wider for fewer particles (the noise of a kernel density estimate grows like 1/sqrt(M sigma))
        bw = 0.03 if M2 >= 1024 else 0.03 * np.sqrt(1024 / M2)
        diff = np.angle(np.exp(1j * (grid[:, None] - ang[None, :])))
        kde = np.exp(-0.5 * (diff / bw) ** 2).mean(axis=1) / (bw * np.sqrt(2 * np.pi))
        axes[1].plot(grid, kde, color=c, label=f"t = {t:.2f}")
    for ax, title in zip(axes, ["ultra-fast diffusion (Eq. III.35, LSODA)", f"VarPro particles, M={M2}"]):
        ax.plot(grid, teacher_density(grid, a.gamma), "k--", lw=1, label="teacher $\\mu_\\gamma$")
        ax.set_yscale("log"), ax.set_xlabel("$\\theta$"), ax.set_title(title), ax.set_ylim(1e-3, 10)
    axes[0].set_ylabel("density"), axes[1].legend(fontsize=7)
    fig.suptitle("Fig. III.2 — biased, $\\lambda=10^{-4}$, $\\gamma=%g$" % a.gamma)
    fig.tight_layout(), fig.savefig(os.path.join(FIG_DIR, "varpro_fig_III2_diffusion.png"), dpi=120)
    plt.close(fig)

    # ---------------------------------------------------------------- Fig III.3 / III.4: widths, lambda = 1e-3
    fig3, ax3 = plt.subplots(1, 2, figsize=(11, 4))
    fig4, ax4 = plt.subplots(1, 2, figsize=(11, 4))
    print("\nFigs III.3-III.4 (lambda=1e-3): width, regulariser, final reduced risk, MMD to teacher, "
          "MMD to diffusion, monotone")
    for k, M in enumerate(a.widths):
        c = plt.cm.plasma(k / max(1, len(a.widths)))
        for j, reg in enumerate(("biased", "unbiased")):
            rs = get(M, 1e-3, reg)
            L = averaged(rs, "reduced_risk")
            it = rs[0]["iters"]
            ax3[j].plot(np.arange(1, len(L) + 1), L, color=c, label=f"M={M}")
            ls = "--" if reg == "biased" else "-"
            ax4[0].plot(it + 1, averaged(rs, "mmd_teacher"), ls, color=c, label=f"M={M} {reg}")
            ax4[1].plot(it + 1, averaged(rs, "mmd_diffusion"), ls, color=c, label=f"M={M} {reg}")
            mono = all(np.all(np.diff(r["reduced_risk"]) <= 1e-12 * r["reduced_risk"][0]) for r in rs)
            print(f"  M={M:5d} {reg:9s} L={L[-1]:.3e}  MMD_teacher={averaged(rs, 'mmd_teacher')[-1]:.4f}  "
                  f"MMD_diffusion={averaged(rs, 'mmd_diffusion')[-1]:.4f}  monotone={mono}")
    for ax, reg in zip(ax3, ("biased $f_b$", "unbiased $f_u$")):
        ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("iteration"), ax.set_ylabel("reduced risk")
        ax.set_title(reg), ax.legend(fontsize=7)
    fig3.suptitle("Fig. III.3 — reduced risk, $\\lambda=10^{-3}$"), fig3.tight_layout()
    fig3.savefig(os.path.join(FIG_DIR, "varpro_fig_III3_reduced_risk.png"), dpi=120)
    for ax, t in zip(ax4, ("MMD to teacher", "MMD to ultra-fast diffusion")):
        ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("iteration"), ax.set_title(t)
        ax.legend(fontsize=7)
    fig4.suptitle("Fig. III.4 — dashed: biased, plain: unbiased, $\\lambda=10^{-3}$"), fig4.tight_layout()
    fig4.savefig(os.path.join(FIG_DIR, "varpro_fig_III4_mmd_widths.png"), dpi=120)
    plt.close(fig3), plt.close(fig4)

    # ---------------------------------------------------------------- Fig III.5: lambda sweep at the largest M
    fig5, ax5 = plt.subplots(1, 2, figsize=(11, 4))
    print(f"\nFig III.5 (M={M2}): lambda, regulariser, MMD to teacher, MMD to diffusion, lambda/||K||")
    for k, lam in enumerate((1e-1, 1e-2, 1e-3, 1e-4)):
        c = plt.cm.viridis(k / 4)
        for reg in ("biased", "unbiased"):
            rs = get(M2, lam, reg)
            ls = "--" if reg == "biased" else "-"
            it = rs[0]["iters"]
            ax5[0].plot(it + 1, averaged(rs, "mmd_teacher"), ls, color=c, label=f"$\\lambda$={lam:g} {reg}")
            ax5[1].plot(it + 1, averaged(rs, "mmd_diffusion"), ls, color=c, label=f"$\\lambda$={lam:g} {reg}")
            print(f"  lambda={lam:7.0e} {reg:9s} MMD_teacher={averaged(rs, 'mmd_teacher')[-1]:.4f}  "
                  f"MMD_diffusion={averaged(rs, 'mmd_diffusion')[-1]:.4f}  "
                  f"lambda/||K||={rs[0]['model'].regularization_ratio_:.2e}")
    for ax, t in zip(ax5, ("MMD to teacher", "MMD to ultra-fast diffusion")):
        ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("iteration"), ax.set_title(t)
        ax.legend(fontsize=6)
    fig5.suptitle(f"Fig. III.5 — M={M2}, dashed: biased, plain: unbiased"), fig5.tight_layout()
    fig5.savefig(os.path.join(FIG_DIR, "varpro_fig_III5_mmd_lambda.png"), dpi=120)
    plt.close(fig5)

    # ---------------------------------------------------------------- Fig III.7: VarPro vs two-timescale GD
    tau7 = 2.0 ** -10  # the thesis's step: two-timescale GD needs tau << lambda (Rem. III.6.1)
    lams7 = (1e-1, 1e-2, 1e-3)
    fig7, ax7 = plt.subplots(len(lams7), 3, figsize=(14, 3.3 * len(lams7)))
    print(f"\nFig III.7 (unbiased, tau=2^-10, {a.tt_steps} steps): exact reduced risk L(omega) at the end")
    for r_, lam in enumerate(lams7):
        for k, M in enumerate(a.widths):
            c = plt.cm.plasma(k / max(1, len(a.widths)))
            finals = {}
            for solver, ls in (("varpro", "-"), ("two-timescale", "--")):
                rs = get(M, lam, "unbiased", solver, tau7, a.tt_steps)
                it = rs[0]["iters"]
                L = averaged(rs, "reduced_risk")
                ax7[r_, 0].plot(np.arange(1, len(L) + 1), L, ls, color=c, label=f"M={M} {solver}")
                ax7[r_, 1].plot(it + 1, averaged(rs, "mmd_teacher"), ls, color=c)
                ax7[r_, 2].plot(it + 1, averaged(rs, "mmd_diffusion"), ls, color=c)
                finals[solver] = (np.mean([x["final_L"] for x in rs]), averaged(rs, "mmd_teacher")[-1],
                                  np.mean([x["fit_time"] for x in rs]))
            vp, tt = finals["varpro"], finals["two-timescale"]
            print(f"  lambda={lam:7.0e} M={M:5d}  VarPro L={vp[0]:.3e} MMD={vp[1]:.4f} ({vp[2]:.1f}s)   "
                  f"two-timescale L={tt[0]:.3e} MMD={tt[1]:.4f} ({tt[2]:.1f}s)")
        ax7[r_, 0].set_ylabel(f"$\\lambda$={lam:g}")
        for j, t in enumerate(("risk (R/$\\lambda$)", "MMD to teacher", "MMD to diffusion")):
            ax7[r_, j].set_xscale("log"), ax7[r_, j].set_yscale("log"), ax7[r_, j].set_title(t, fontsize=9)
    ax7[0, 0].legend(fontsize=6)
    fig7.suptitle("Fig. III.7 — plain: VarPro, dashed: two-timescale GD (unbiased)"), fig7.tight_layout()
    fig7.savefig(os.path.join(FIG_DIR, "varpro_fig_III7_two_timescale.png"), dpi=120)
    plt.close(fig7)

    # ---------------------------------------------------------------- the acceptance numbers
    M = 128 if 128 in a.widths else a.widths[-1]
    rs = get(M, 1e-3, "unbiased")
    mono = all(np.all(np.diff(r["reduced_risk"]) <= 1e-12 * r["reduced_risk"][0]) for r in rs)
    print(f"\nSummary (lambda=1e-3, gamma={a.gamma:g}, unbiased, M={M}, {a.steps} steps at tau={a.tau:g}): "
          f"reduced risk monotone={mono}, final MMD to teacher={averaged(rs, 'mmd_teacher')[-1]:.4f}")
    vp = get(M, 1e-3, "unbiased", "varpro", tau7, a.tt_steps)
    tt = get(M, 1e-3, "unbiased", "two-timescale", tau7, a.tt_steps)
    print(f"  same lambda, {a.tt_steps} steps at tau=2^-10: VarPro L={np.mean([r['final_L'] for r in vp]):.4e}  "
          f"two-timescale L={np.mean([r['final_L'] for r in tt]):.4e}")
    print(f"total time {time.perf_counter() - t_start:.0f}s; figures in {FIG_DIR}")


if __name__ == "__main__":
    main()
