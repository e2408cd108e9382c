"""The README's main job: fit skflow's estimators on built-in data next to scikit-learn's peers.

Run ``python -m skflow.demo`` (``--quick`` for a smaller, faster run). For each dataset it prints the test
score, the fit time and the convergence diagnostics the theory speaks about:

* regression -- make_friedman1 (1000 training / 1000 test points, noise 0.5) and load_diabetes (a quarter
  held out): :class:`~skflow.MeanFieldNODERegressor` and :class:`~skflow.VarProSHLRegressor` (which chooses
  its ridge strength ``alpha`` itself) against
  ``KernelRidge`` (Gaussian kernel, ``alpha`` and ``gamma`` tuned by ``GridSearchCV``) and ``MLPRegressor``;
* classification -- load_digits (a stratified third held out): :class:`~skflow.RKHSNODEClassifier` against
  ``SVC``.

Inputs are standardised on the training split (a ``StandardScaler`` in a ``Pipeline``); every model uses
``random_state=0``, and the estimators of skflow run with their default parameters.
"""

import argparse
import math
import time
import warnings

import numpy as np
from sklearn.datasets import load_diabetes, load_digits, make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from . import MeanFieldNODERegressor, RKHSNODEClassifier, VarProSHLRegressor

__all__ = ["main", "regression_datasets", "run_regression", "run_classification"]


def regression_datasets(quick=False):
    """``{name: (X_train, X_test, y_train, y_test)}`` for the regression part of the demo."""
    n_train = 400 if quick else 1000
    X, y = make_friedman1(n_samples=2 * n_train, noise=0.5, random_state=0)
    data = {"friedman1": train_test_split(X, y, train_size=n_train, random_state=0)}
    Xd, yd = load_diabetes(return_X_y=True)
    data["diabetes"] = train_test_split(Xd, yd, test_size=0.25, random_state=0)
    return data


def _kernel_ridge(quick):
    grid = {
        "kernelridge__alpha": np.logspace(-6, 0, 4 if quick else 7),
        "kernelridge__gamma": np.logspace(-3, 0, 4 if quick else 7),
    }
    return GridSearchCV(make_pipeline(StandardScaler(), KernelRidge(kernel="rbf")), grid, cv=5)


def _fit_timed(model, X, y):
    with warnings.catch_warnings():
        # MLPRegressor's max_iter warnings would bury the tables; skflow's default fits raise none
        if not _is_skflow(model):
            warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        model.fit(X, y)
    return time.perf_counter() - t0


def _is_skflow(model):
    last = model[-1] if hasattr(model, "steps") else model
    return type(last).__module__.startswith("skflow")


def _lambda_note(lam, width, n_points):
    """``lambda_0`` of a width-``M`` kernel, with what a zero means: rank <= M < points, not round-off."""
    if lam == 0 and width < n_points:
        return f"0 (M={width} < {n_points} points: rank-deficient by construction)"
    return f"{lam:.3g} (M={width})"


def _node_diagnostics(m):
    rep = m.convergence_report_
    return (f"iters {m.n_iter_} ({m.stop_reason_}), P-L m {m.pl_constant_:.3g}, observed rate "
            f"{rep.get('observed_rate', float('nan')):.3g}, lambda_0 "
            f"{_lambda_note(m.kernel_lambda_min_, m.width, m.kernel_n_samples_)}, infinite-width "
            f"{m.exact_kernel_lambda_min_:.3g}, W2_COT {m.cot_distance_:.3g}")


def _varpro_diagnostics(m):
    return (f"iters {m.n_iter_} ({m.stop_reason_}), alpha_ {m.alpha_:.1e}, reduced risk "
            f"{m.reduced_risk_curve_[-1]:.3g}, lambda/||K|| {m.regularization_ratio_:.3g}, top eig(K) "
            f"{m.kernel_spectrum_[0]:.3g}")


def _rkhs_diagnostics(m):
    n_kernel = min(m.kernel_subsample, math.isqrt(m.required_width_))  # required_width_ = N^2
    return (f"iters {m.n_iter_} ({m.stop_reason_}), {m.loss} risk {m.loss_curve_[-1]:.2e}, epochs {m.max_iter_}, delta "
            f"{m.data_separation_:.3g}, lambda_min RF "
            f"{_lambda_note(m.kernel_lambda_min_, m.n_features_used_, n_kernel)}"
            " / exact "
            f"{m.exact_kernel_lambda_min_:.3g}, P-L m {m.pl_constant_:.3g}")


def _table(title, rows, score_name):
    print(f"\n{title}")
    print(f"  {'model':<26}{score_name:>9}{'fit (s)':>10}   diagnostics")
    for name, score, seconds, diag in rows:
        print(f"  {name:<26}{score:>9.4f}{seconds:>10.2f}   {diag}")


def run_regression(quick=False):
    """Fit and score the regression models; returns ``{dataset: [(model, R2, seconds, diagnostics)]}``."""
    results = {}
    for name, (Xtr, Xte, ytr, yte) in regression_datasets(quick).items():
        models = [
            ("MeanFieldNODERegressor", make_pipeline(StandardScaler(), MeanFieldNODERegressor(random_state=0)),
             lambda p: _node_diagnostics(p[-1])),
            ("VarProSHLRegressor", make_pipeline(StandardScaler(), VarProSHLRegressor(random_state=0)),
             lambda p: _varpro_diagnostics(p[-1])),
            ("KernelRidge (GridSearch)", _kernel_ridge(quick),
             lambda g: "alpha {kernelridge__alpha:.1e}, gamma {kernelridge__gamma:.1e}".format(**g.best_params_)),
            ("MLPRegressor", make_pipeline(StandardScaler(), MLPRegressor(max_iter=2000, random_state=0)),
             lambda p: f"iters {p[-1].n_iter_}, adam, 100 hidden units"),
        ]
        rows = []
        for label, model, describe in models:
            seconds = _fit_timed(model, Xtr, ytr)
            rows.append((label, model.score(Xte, yte), seconds, describe(model)))
        _table(f"{name}: {len(ytr)} training / {len(yte)} test points, test R^2", rows, "R^2")
        results[name] = rows
    return results


def run_classification(quick=False):
    """Fit and score on load_digits; returns ``[(model, accuracy, seconds, diagnostics)]``."""
    X, y = load_digits(return_X_y=True)
    if quick:
        keep = np.isin(y, [0, 1, 2, 3, 4])
        X, y = X[keep], y[keep]
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=1 / 3, stratify=y, random_state=0)
    models = [
        ("RKHSNODEClassifier", make_pipeline(StandardScaler(), RKHSNODEClassifier(random_state=0)),
         lambda p: _rkhs_diagnostics(p[-1])),
        ("SVC", make_pipeline(StandardScaler(), SVC()), lambda p: "defaults (RBF, gamma='scale')"),
    ]
    rows = []
    for label, model, describe in models:
        seconds = _fit_timed(model, Xtr, ytr)
        rows.append((label, model.score(Xte, yte), seconds, describe(model)))
    _table(f"digits: {len(ytr)} training / {len(yte)} test points, test accuracy", rows, "accuracy")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m skflow.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data and grids (about a minute)")
    args = parser.parse_args(argv)
    import torch

    from . import __version__

    print(f"skflow {__version__}, torch {torch.__version__}, device "
          f"{'cuda: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}")
    t0 = time.perf_counter()
    run_regression(args.quick)
    run_classification(args.quick)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
