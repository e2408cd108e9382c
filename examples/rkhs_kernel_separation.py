"""
=====================================================================
Smallest eigenvalue of the kernel matrix against the data separation
=====================================================================

Thesis Eq. II.30, Thm. II.6. The P-L constant of an RKHS-NODE (Prop. II.4.4) is
``m = lambda_K(delta e^{-kappa R}) e^{-2 kappa R} / N``, where ``lambda_K(delta)`` (Eq. II.30) is the smallest
eigenvalue of the kernel matrix over configurations of separation ``delta = min_{i != j} |x_i - x_j|``.
Thm. II.6 uses the lower bounds of Schaback (1995):

* Matern ``nu``: ``lambda_K(delta) >~ delta^{2 nu - d}`` (algebraic);
* Gaussian: ``lambda_K(delta) >~ delta^{-d} exp(-C / delta^2)`` (exponentially small as ``delta -> 0``).

This example puts ``N`` points on a square grid of spacing ``delta`` in ``R^2`` (so the separation is exactly
``delta``), perturbs them slightly (keeping the separation above ``0.9 delta``), and plots, in the left panel
of ``examples/figures/rkhs_kernel_separation.png``, ``lambda_min`` of the exact kernel matrix (length scale 1)
against ``delta``, with the shapes of the bounds (their constants, which the theory leaves unspecified,
fitted as the lower envelope of the data): the Gaussian curve falls much faster than the Matern ones. The
right panel shows ``lambda_min`` of the random-feature kernel ``Phi Phi^T`` for widths ``M = N/2, N, 10 N,
100 N``: it approaches the exact value at the ``1/sqrt(M)`` rate of Lemma II.4.2 and is 0 for ``M < N`` --
the reason Thm. II.6 asks for ``M >~ N^2`` (times a factor that blows up as ``lambda_K(delta)`` shrinks).

Run: ``python examples/rkhs_kernel_separation.py [--quick]``
"""

# %%
import argparse
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

from skflow.diagnostics import data_separation, exact_kernel_lambda_min, gram_lambda_min
from skflow.flows.rkhs import init_random_features, random_features

FIGURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures")
D = 2  # dimension of the inputs
KERNELS = {"gaussian": (np.inf, "Gaussian"), "matern": (1.5, "Matern nu=1.5"), "matern2": (2.5, "Matern nu=2.5")}

# %%
# Jittered grids of separation ``delta``
# --------------------------------------
# One random state draws every jitter, first for the exact kernels, then for the random features.


def grid_points(side, delta, rng):
    """``side x side`` grid of spacing ``delta``, each point moved by at most ``0.05 delta``."""
    g = np.arange(side) * delta
    X = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    return X + rng.uniform(-0.025, 0.025, X.shape) * delta


def exact_sweep(side, deltas, rng):
    """Separation and ``lambda_min`` of each closed-form kernel matrix, per grid spacing."""
    lam, seps = {k: [] for k in KERNELS}, []
    for delta in deltas:
        X = grid_points(side, delta, rng)
        seps.append(data_separation(X))
        for key, (nu, _) in KERNELS.items():
            lam[key].append(exact_kernel_lambda_min(X, "gaussian" if key == "gaussian" else "matern", 1.0, nu))
    return np.array(seps), {k: np.array(v) for k, v in lam.items()}


# %%
# Exact kernels and the shapes of the lower bounds
# ------------------------------------------------
# The bound shapes are fitted on ``delta < 1``, where they are meant (``lambda_min`` saturates at 1 for well
# separated points); below ``1e-14`` the eigenvalue is round-off and is not drawn.


def gaussian_bound(seps, v, ok):
    """Lower envelope of the shape ``delta^{-d} exp(-C / delta^2)``: returns ``C`` and the curve."""
    fit = ok & (seps < 1.0)
    logs = np.log(v[fit] * seps[fit] ** D)
    c0, C = np.linalg.lstsq(np.c_[np.ones(fit.sum()), -1.0 / seps[fit] ** 2], logs, rcond=None)[0]
    c0 = np.min(logs + C / seps[fit] ** 2)
    return C, np.exp(c0 - C / seps**2) * seps ** (-D)


def plot_exact(ax, seps, lam, side):
    for key, (nu, label) in KERNELS.items():
        v = lam[key]
        ok = v > 1e-14  # below that, eigvalsh returns round-off
        line, = ax.loglog(seps[ok], v[ok], "o-", label=f"{label}: lambda_min")
        if key == "gaussian":
            C, shape = gaussian_bound(seps, v, ok)
            ax.loglog(seps, shape, "--", color=line.get_color(), label=f"bound shape delta^-d exp(-{C:.2f}/delta^2)")
        elif (ok & (seps < 1.0)).any():
            # algebraic shape delta^{2 nu - d}, constant set to the lower envelope at small delta
            small = ok & (seps < 1.0)
            c = np.min(v[small] / seps[small] ** (2 * nu - D))
            ax.loglog(seps, c * seps ** (2 * nu - D), "--", color=line.get_color(),
                      label=f"bound shape delta^(2nu-d) = delta^{2 * nu - D:g}")
    ax.set_xlabel("data separation delta (length scale 1)")
    ax.set_ylabel("lambda_min of the kernel matrix")
    ax.set_title(f"Eq. II.30 on a jittered {side}x{side} grid (N={side * side}, d=2)")
    ax.set_ylim(1e-14, 2)
    ax.legend(fontsize=7)


# %%
# Random features against the exact Gaussian kernel
# -------------------------------------------------
# ``Phi = random_features(X, W, b)`` with ``M`` frequencies drawn from the Gaussian spectral measure
# (Eq. II.33-II.34); ``gram_lambda_min(Phi)`` is ``lambda_min(Phi Phi^T)``, exactly 0 when ``M < N``.


def random_feature_sweep(side, deltas, widths, rng):
    gen = torch.Generator().manual_seed(0)
    exact, rf = [], {M: [] for M in widths}
    for delta in deltas:
        X = torch.as_tensor(grid_points(side, delta, rng))
        exact.append(exact_kernel_lambda_min(X, "gaussian", 1.0))
        for M in widths:
            W, b = init_random_features(M, D, "gaussian", 1.0, generator=gen)
            rf[M].append(gram_lambda_min(random_features(X, W, b)))
    return np.array(exact), {M: np.array(v) for M, v in rf.items()}


def plot_random_features(ax, deltas, exact, rf, N):
    ax.semilogx(deltas, exact, "k-", lw=2, label="exact Gaussian kernel")
    for M, v in rf.items():
        ax.semilogx(deltas, v, "o--", label=f"random features M={M} ({M / N:.2g} N)")
    ax.axhline(0.0, color="gray", lw=0.5)
    ax.set_xlabel("data separation delta")
    ax.set_ylabel("lambda_min")
    ax.set_title("random-feature kernel Phi Phi^T (Eq. II.34) vs exact")
    ax.legend(fontsize=7)


def main(quick=False):
    os.makedirs(FIGURES, exist_ok=True)
    rng = np.random.RandomState(0)
    side = 5 if quick else 7
    N = side * side
    deltas = np.geomspace(0.3, 3.0, 8 if quick else 16)
    widths = [N // 2, N, 10 * N, 50 * N] if quick else [N // 2, N, 10 * N, 100 * N]
    seps, lam = exact_sweep(side, deltas, rng)
    exact, rf = random_feature_sweep(side, deltas[deltas >= 1.0], widths, rng)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    plot_exact(axes[0], seps, lam, side)
    plot_random_features(axes[1], deltas[deltas >= 1.0], exact, rf, N)
    fig.tight_layout()
    path = os.path.join(FIGURES, "rkhs_kernel_separation.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    for key, (_nu, label) in KERNELS.items():
        print(label, " ".join(f"{s:.2f}:{v:.2e}" for s, v in zip(seps, lam[key])))
    for M in widths:
        print(f"M={M:6d}: max |lambda_min(Phi Phi^T) - lambda_min(K)| = {np.max(np.abs(rf[M] - exact)):.3e}")
    print("saved", path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Smallest eigenvalue of the kernel matrix against the separation.")
    parser.add_argument("--quick", action="store_true", help="a 5x5 grid, 8 separations, widths up to 50 N")
    main(**vars(parser.parse_args()))
