"""Tests specific to skflow.MeanFieldNODERegressor (the contract shared by every estimator: test_common.py)."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone

from skflow import MeanFieldNODERegressor
from skflow.diagnostics import conditional_wasserstein, kernel_lambda_min


def test_fits_friedman_and_exposes_diagnostics(regression_data, quiet_fit):
    X, y, Xt, yt = regression_data
    m = quiet_fit(MeanFieldNODERegressor(n_layers=4, width=256, max_iter=150, early_stopping=False,
                                         random_state=0, device="cpu"), X, y)
    assert m.score(Xt, yt) > 0.75
    S, M, D = 4, 256, X.shape[1] + 1
    assert m.U_.shape == (S, M, D) and m.W_.shape == (S, M, D) and m.b_.shape == (S, M)
    n = m.n_iter_
    for name in ("loss_curve_", "flow_time_", "pl_ratio_curve_", "cot_displacement_curve_"):
        arr = getattr(m, name)
        assert isinstance(arr, np.ndarray) and arr.dtype == np.float64 and arr.shape == (n,), name
    np.testing.assert_allclose(m.flow_time_, m.learning_rate * np.arange(n))
    assert m.pl_constant_ == pytest.approx(m.pl_ratio_curve_.min())
    assert m.loss_curve_[-1] < 0.1 * m.loss_curve_[0]
    # diagnostics agree with independent computations
    assert m.cot_distance_ == pytest.approx(conditional_wasserstein((m.U_, m.W_, m.b_), _initial(m)))
    # the curve is recorded at the start of each iteration (like loss_curve_); the final displacement is
    # an upper bound of the exact distance (the identity pairing is one admissible coupling)
    assert 0 < m.cot_distance_ <= float(m.flow_.displacement()) * (1 + 1e-12)
    assert m.cot_displacement_curve_[-1] <= float(m.flow_.displacement()) + 0.1
    Z = np.hstack([X, np.zeros((X.shape[0], 1))])  # the lifted inputs z(0) = (x, 0)
    assert m.exact_kernel_lambda_min_ == pytest.approx(kernel_lambda_min(Z, "gaussian", m.feature_scale))
    assert m.kernel_lambda_min_ > 0  # M = 256 >= N = 160: the finite-width kernel is non-singular
    rep = m.convergence_report_
    for key in ("observed_rate", "pl_constant", "pl_bound_holds", "kernel_lambda_min", "kernel_rate",
                "distance_travelled", "local_pl_condition"):
        assert key in rep
    assert rep["kernel_rate"] == pytest.approx(2 * m.output_scale**2 * m.kernel_lambda_min_ / 160)


def _initial(model):
    P = model.flow_.initial_particles().detach().cpu().numpy()
    return P


def test_singular_kernel_below_n_is_explained_not_warned(regression_data):
    """M < N makes K1 singular by construction: lambda_min is exactly 0, said in the report, with no warning."""
    X, y, _, _ = regression_data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = MeanFieldNODERegressor(n_layers=2, width=16, max_iter=5, early_stopping=False, tol=0,
                                   device="cpu", random_state=0).fit(X, y)
    assert m.kernel_lambda_min_ == 0.0 and np.all(m.layer_kernel_lambda_min_ == 0)
    assert m.exact_kernel_lambda_min_ > 0
    assert "width M=16 is below the 160 points" in m.convergence_report_["kernel_note"]
    wide = MeanFieldNODERegressor(n_layers=2, width=200, max_iter=2, early_stopping=False, tol=0, device="cpu",
                                  random_state=0).fit(X, y)
    assert "kernel_note" not in wide.convergence_report_ and wide.kernel_lambda_min_ > 0


def test_kernel_lambda_min_positive_and_close_to_closed_form_when_wide():
    rng = np.random.RandomState(0)
    X = rng.randn(20, 2)
    y = rng.randn(20)
    m = MeanFieldNODERegressor(n_layers=2, width=4000, feature_scale=4.0, max_iter=1, tol=0,
                               early_stopping=False, device="cpu", random_state=0).fit(X, y)
    assert m.kernel_lambda_min_ == pytest.approx(m.exact_kernel_lambda_min_, rel=0.1)


def test_multi_output(regression_data, quiet_fit):
    X, y, _, _ = regression_data
    Y = np.column_stack([y, -2 * y + 1])
    m = quiet_fit(MeanFieldNODERegressor(n_layers=3, width=64, max_iter=80, random_state=0, device="cpu"), X, Y)
    P = m.predict(X)
    assert P.shape == (160, 2)
    assert m.U_.shape[2] == X.shape[1] + 2
    assert np.corrcoef(P[:, 0], P[:, 1])[0, 1] < -0.99  # the two outputs share the learned structure
    m1 = quiet_fit(clone(m), X, y)
    assert m1.predict(X).shape == (160,)


def test_huge_learning_rate_is_caught_as_divergence(regression_data):
    from skflow import DivergenceWarning

    X, y, Xt, _ = regression_data
    m = MeanFieldNODERegressor(n_layers=3, width=32, learning_rate=1e4, max_iter=50, early_stopping=False,
                               device="cpu", random_state=0)
    with pytest.warns(DivergenceWarning, match="smaller learning_rate"):
        m.fit(X, y)
    assert m.stop_reason_ == "diverged"
    assert np.all(np.isfinite(m.loss_curve_)) and m.n_iter_ < 50
    assert np.all(np.isfinite(m.predict(Xt)))  # the last finite parameters were restored
    assert np.all(np.isfinite(m.U_))


@pytest.mark.parametrize("solver", ["euler", "midpoint", "rk4"])
def test_solvers_agree_for_deep_nets(solver, regression_data, quiet_fit):
    """All integrators discretise the same ODE: for S large they train to the same risk curve."""
    X, y, _, _ = regression_data
    kw = dict(n_layers=16, width=64, max_iter=30, tol=0, early_stopping=False, device="cpu", random_state=0)
    ref = quiet_fit(MeanFieldNODERegressor(**kw), X, y)
    m = quiet_fit(MeanFieldNODERegressor(solver=solver, **kw), X, y)
    np.testing.assert_allclose(m.loss_curve_, ref.loss_curve_, rtol=0.02)


def test_minibatch_option(regression_data, quiet_fit):
    X, y, Xt, yt = regression_data
    m = quiet_fit(MeanFieldNODERegressor(n_layers=3, width=64, batch_size=32, max_iter=30, early_stopping=False,
                                         device="cpu", random_state=0), X, y)
    assert m.n_iter_ == 30
    np.testing.assert_allclose(m.flow_time_, m.learning_rate * 5 * np.arange(30))  # 5 steps per epoch
    assert m.score(Xt, yt) > 0.5


def test_frozen_features(regression_data, quiet_fit):
    X, y, _, _ = regression_data
    m = quiet_fit(MeanFieldNODERegressor(n_layers=2, width=32, max_iter=10, train_features=False,
                                         device="cpu", random_state=0), X, y)
    W0 = m.flow_.W0.cpu().numpy()
    np.testing.assert_array_equal(m.W_, W0)


def test_relu_warns_outside_theory(regression_data):
    X, y, _, _ = regression_data
    with pytest.warns(UserWarning, match="outside the theory"):
        MeanFieldNODERegressor(n_layers=3, width=32, activation="relu", max_iter=2, device="cpu").fit(X, y)
