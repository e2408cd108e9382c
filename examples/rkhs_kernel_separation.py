"""Smallest eigenvalue of the kernel matrix against the data separation (thesis Eq. II.30, Thm. II.6).

The P-L constant of an RKHS-NODE (Prop. II.4.4) is ``m = lambda_K(delta e^{-kappa R}) e^{-2 kappa R} / N``, where
``lambda_K(delta)`` (Eq. II.30) is the smallest eigenvalue of the kernel matrix over configurations of
separation ``delta = min_{i != j} |x_i - x_j|``. Thm. II.6 uses the lower bounds of Schaback (1995):

* Matern ``nu``: ``lambda_K(delta) >~ delta^{2 nu - d}`` (algebraic);
* Gaussian: ``lambda_K(delta) >~ delta^{-d} exp(-C / delta^2)`` (exponentially small as ``delta -> 0``).

This example puts ``N`` points on a square grid of spacing ``delta`` in ``R^2`` (so the separation is exactly
``delta``), perturbs them slightly (keeping the separation above ``0.9 delta``), and plots ``lambda_min`` of
the exact kernel matrix (length scale 1) against ``delta``, with the shapes of the bounds (their constants,
which the theory leaves unspecified, fitted as the lower envelope of the data). A second panel shows
``lambda_min`` of the random-feature kernel ``Phi Phi^T`` for widths ``M = N, 10 N, 100 N``: it approaches the
exact value at the ``1/sqrt(M)`` rate of Lemma II.4.2 and is 0 for ``M < N`` -- the reason Thm. II.6 asks for
``M >~ N^2`` (times a factor that blows up as ``lambda_K(delta)`` shrinks).

Run: ``python examples/rkhs_kernel_separation.py [--quick]``; figures go to ``examples/figures/``.
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from skflow.flows.rkhs import (  # noqa: E402
    data_separation,
    exact_kernel_lambda_min,
    init_random_features,
    random_feature_kernel_lambda_min,
)

FIGURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures")


def grid_points(side, delta, rng):
    """``side x side`` grid of spacing ``delta``, each point moved by at most ``0.05 delta``."""
    g = np.arange(side) * delta
    X = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    return X + rng.uniform(-0.025, 0.025, X.shape) * delta


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    os.makedirs(FIGURES, exist_ok=True)
    rng = np.random.RandomState(0)
    side = 5 if a.quick else 7
    N = side * side
    deltas = np.geomspace(0.3, 3.0, 8 if a.quick else 16)
    kernels = {"gaussian": (np.inf, "Gaussian"), "matern": (1.5, "Matern nu=1.5"), "matern2": (2.5, "Matern nu=2.5")}
    lam = {k: [] for k in kernels}
    seps = []
    for delta in deltas:
        X = grid_points(side, delta, rng)
        seps.append(data_separation(X))
        for key, (nu, _) in kernels.items():
            name = "gaussian" if key == "gaussian" else "matern"
            lam[key].append(exact_kernel_lambda_min(X, name, 1.0, nu))
    seps = np.array(seps)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    d = 2
    for key, (nu, label) in kernels.items():
        v = np.array(lam[key])
        ok = v > 1e-14  # below that, eigvalsh returns round-off
        line, = ax.loglog(seps[ok], v[ok], "o-", label=f"{label}: lambda_min")
        if key == "gaussian":
            # shape delta^{-d} exp(-C / delta^2): fit log(lambda delta^d) = c0 - C / delta^2 (lower envelope)
            # on delta < 1, where the bound is meant (lambda_min saturates at 1 for well separated points)
            fit = ok & (seps < 1.0)
            A = np.c_[np.ones(fit.sum()), -1.0 / seps[fit] ** 2]
            c0, C = np.linalg.lstsq(A, np.log(v[fit] * seps[fit] ** d), rcond=None)[0]
            c0 = np.min(np.log(v[fit] * seps[fit] ** d) + C / seps[fit] ** 2)
            shape = np.exp(c0 - C / seps**2) * seps ** (-d)
            ax.loglog(seps, shape, "--", color=line.get_color(),
                      label=f"bound shape delta^-d exp(-{C:.2f}/delta^2)")
        else:
            # algebraic shape delta^{2 nu - d}, constant set to the lower envelope at small delta
            small = ok & (seps < 1.0)
            if small.any():
                c = np.min(v[small] / seps[small] ** (2 * nu - d))
                ax.loglog(seps, c * seps ** (2 * nu - d), "--", color=line.get_color(),
                          label=f"bound shape delta^(2nu-d) = delta^{2 * nu - d:g}")
    ax.set_xlabel("data separation delta (length scale 1)")
    ax.set_ylabel("lambda_min of the kernel matrix")
    ax.set_title(f"Eq. II.30 on a jittered {side}x{side} grid (N={N}, d=2)")
    ax.set_ylim(1e-14, 2)
    ax.legend(fontsize=7)

    # random features: lambda_min(Phi Phi^T) -> exact as M grows; 0 for M < N
    ax = axes[1]
    widths = [N // 2, N, 10 * N, 100 * N] if not a.quick else [N // 2, N, 10 * N, 50 * N]
    gen = torch.Generator().manual_seed(0)
    dsel = deltas[deltas >= 1.0]
    exact = []
    rf = {M: [] for M in widths}
    for delta in dsel:
        X = torch.as_tensor(grid_points(side, delta, rng))
        exact.append(exact_kernel_lambda_min(X, "gaussian", 1.0))
        for M in widths:
            W, b = init_random_features(M, 2, "gaussian", 1.0, generator=gen)
            rf[M].append(random_feature_kernel_lambda_min(X, W, b))
    ax.semilogx(dsel, exact, "k-", lw=2, label="exact Gaussian kernel")
    for M in widths:
        ax.semilogx(dsel, rf[M], "o--", label=f"random features M={M} ({M / N:.2g} N)")
    ax.axhline(0.0, color="gray", lw=0.5)
    ax.set_xlabel("data separation delta")
    ax.set_ylabel("lambda_min")
    ax.set_title("random-feature kernel Phi Phi^T (Eq. II.34) vs exact")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(FIGURES, "rkhs_kernel_separation.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    for key, (nu, label) in kernels.items():
        print(label, " ".join(f"{s:.2f}:{v:.2e}" for s, v in zip(seps, lam[key])))
    for M in widths:
        err = np.max(np.abs(np.array(rf[M]) - np.array(exact)))
        print(f"M={M:6d}: max |lambda_min(Phi Phi^T) - lambda_min(K)| = {err:.3e}")
    print("saved", path)


if __name__ == "__main__":
    main()
