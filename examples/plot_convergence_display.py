"""
=====================================================
Convergence of a mean-field NODE: ConvergenceDisplay
=====================================================

:class:`skflow.inspection.ConvergenceDisplay` draws what a fitted flow recorded: the training and validation
risk against flow time, the Polyak-Lojasiewicz bound ``R(0) exp(-m t)`` for the P-L constant
``m = pl_constant_`` (the smallest ratio ``|grad R|^2 / R`` met along the trajectory), and that ratio on a
second axis. Here: the default :class:`skflow.MeanFieldNODERegressor` on ``make_friedman1(n_samples=1000,
noise=0.5, random_state=0)``, inputs standardised in a Pipeline (the Display reads the Pipeline's last step).

The figure is the README's ``examples/images/convergence.png``; ``--quick`` caps the fit at 50 iterations and
writes ``examples/figures/convergence_quick.png`` instead, leaving the README image alone.

Run: ``python examples/plot_convergence_display.py [--quick] [--device D]``
"""

# %%
import argparse
import os
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.datasets import make_friedman1  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from skflow import MeanFieldNODERegressor  # noqa: E402
from skflow.inspection import ConvergenceDisplay  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def fit_default_node(quick=False, device="auto"):
    """The default NODE in a scaling Pipeline, fitted on 1000 rows of make_friedman1."""
    X, y = make_friedman1(n_samples=1000, noise=0.5, random_state=0)
    model = MeanFieldNODERegressor(random_state=0, device=device)
    if quick:
        model.set_params(max_iter=50)
    pipe = make_pipeline(StandardScaler(), model)
    with warnings.catch_warnings():
        # a ConvergenceWarning under --quick (max_iter=50 comes before early stopping)
        warnings.simplefilter("ignore")
        return pipe.fit(X, y)


def save_convergence_figure(pipe, path, dpi=100):
    """Draw ``ConvergenceDisplay.from_estimator(pipe)`` and save it to ``path``."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    disp = ConvergenceDisplay.from_estimator(pipe, ax=ax)
    m = pipe[-1]
    ax.set_title(f"MeanFieldNODERegressor on make_friedman1: {m.n_iter_} iterations ({m.stop_reason_})",
                 fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return disp


def main(quick=False, device="auto"):
    pipe = fit_default_node(quick, device)
    name = os.path.join("figures", "convergence_quick.png") if quick else os.path.join("images", "convergence.png")
    path = os.path.join(HERE, name)
    disp = save_convergence_figure(pipe, path)
    print(f"P-L constant m = {disp.pl_constant:.4g}, R(0) = {disp.risk[0]:.4g}, final risk = {disp.risk[-1]:.4g}")
    print(f"saved {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="ConvergenceDisplay of the default NODE on make_friedman1.")
    parser.add_argument("--quick", action="store_true", help="a smoke run: at most 50 iterations")
    parser.add_argument("--device", default="auto")
    main(**vars(parser.parse_args()))
