"""Tests specific to skflow.VarProSHLRegressor (the contract shared by every estimator: test_common.py)."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_friedman1
from sklearn.preprocessing import StandardScaler

from skflow import VarProSHLRegressor
from skflow.datasets import make_teacher_student
from skflow.flows._ridge import ridge_projection
from skflow.flows.varpro import features


@pytest.fixture(scope="module")
def friedman():
    """A larger regression set than conftest's (300 training points): the quality floors below are set on it."""
    X, y = make_friedman1(n_samples=400, noise=0.5, random_state=0)
    X = StandardScaler().fit_transform(X)
    return X[:300], y[:300], X[300:], y[300:]


def test_predict_equals_mean_field_formula(friedman):
    X, y, Xte, _ = friedman
    m = VarProSHLRegressor(width=40, max_iter=30, random_state=0, device="cpu").fit(X, y)
    assert m.features_.shape == (40, X.shape[1] + 1) and m.outer_weights_.shape == (40, 1)
    Phi = np.maximum(np.c_[Xte, np.ones(len(Xte))] @ m.features_.T, 0.0)
    raw = Phi @ m.outer_weights_ / 40
    np.testing.assert_allclose((m.predict(Xte) - m.y_mean_) / m.y_scale_, raw[:, 0], rtol=1e-10, atol=1e-10)


def test_outer_weights_are_the_exact_projection_at_the_end(friedman):
    X, y, _, _ = friedman
    m = VarProSHLRegressor(width=30, max_iter=20, alpha=1e-2, tol=0, early_stopping=False, random_state=0,
                           device="cpu").fit(X, y)
    Ys = (y - m.y_mean_) / m.y_scale_
    Phi = np.maximum(np.c_[X, np.ones(len(X))] @ m.features_.T, 0.0)
    N, M = Phi.shape
    u = np.linalg.solve(Phi.T @ Phi / (N * M) + 1e-2 * np.eye(M), Phi.T @ Ys / N)
    np.testing.assert_allclose(m.outer_weights_[:, 0], u, rtol=1e-7, atol=1e-9)
    # the reduced-risk curve is L(omega) of Eq. III.41 and reduced_risk() recomputes it at the end
    assert m.reduced_risk(X, y) <= m.reduced_risk_curve_[0]


def test_fitted_attributes_and_diagnostics(friedman):
    X, y, _, _ = friedman
    m = VarProSHLRegressor(width=50, max_iter=25, tol=0, store_features_every=5, n_spectrum=4,
                           random_state=0, device="cpu").fit(X, y)
    assert m.n_iter_ == 25
    for name in ("loss_curve_", "reduced_risk_curve_", "pl_ratio_curve_"):
        assert getattr(m, name).shape == (25,)
    assert np.all(m.loss_curve_ >= 0) and np.all(m.reduced_risk_curve_ >= m.loss_curve_ / m.alpha_path_)
    assert m.kernel_spectrum_.shape == (4,) and np.all(np.diff(m.kernel_spectrum_) <= 0)
    assert m.regularization_ratio_ == pytest.approx(m.alpha_ / m.kernel_spectrum_[0])
    assert m.feature_history_.shape == (6, 50, X.shape[1] + 1)  # initial + every 5 steps
    np.testing.assert_allclose(m.feature_history_[-1], m.features_)
    assert m.loss_curve_[-1] < m.loss_curve_[0]


def test_multi_output_biased(friedman):
    X, y, _, _ = friedman
    Y = np.c_[y, -2 * y + 1]
    m = VarProSHLRegressor(width=40, max_iter=20, random_state=0, device="cpu").fit(X, Y)
    assert m.outer_weights_.shape == (40, 2) and m.predict(X).shape == (len(X), 2)
    assert m.score(X, Y) > 0.8


def test_sphere_unbiased_teacher_no_target_scaling():
    X, y = make_teacher_student(300, teacher_width=256, gamma=10, random_state=0)
    m = VarProSHLRegressor(width=32, feature_domain="sphere", regularization="unbiased", alpha=1e-3,
                           learning_rate=2.0 ** -6, max_iter=50, tol=0, random_state=0, device="cpu").fit(X, y)
    assert m.features_.shape == (32, 2)
    np.testing.assert_allclose(np.linalg.norm(m.features_, axis=1), 1.0, rtol=1e-12)
    # 'auto' leaves y unscaled for the unbiased regulariser (see the scale_targets docstring)
    assert m.y_mean_[0] == 0.0 and m.y_scale_[0] == 1.0
    assert np.all(np.diff(m.reduced_risk_curve_) <= 0)
    assert m.score(X, y) > 0.99


def test_sphere_needs_two_features():
    with pytest.raises(ValueError, match="sphere"):
        VarProSHLRegressor(feature_domain="sphere", device="cpu").fit(np.ones((10, 1)), np.arange(10.0))


@pytest.mark.parametrize("solver", ["two-timescale", "gd"])
def test_other_solvers_fit(friedman, solver):
    X, y, Xte, yte = friedman
    # tau << lambda: the regime where two-timescale GD follows VarPro (Rem. III.6.1)
    m = VarProSHLRegressor(width=64, solver=solver, alpha=1e-2, learning_rate=1e-3, max_iter=100, tol=0,
                           early_stopping=False, random_state=0, device="cpu").fit(X, y)
    assert np.isfinite(m.loss_curve_).all() and m.loss_curve_[-1] < 0.5 * m.loss_curve_[0]
    assert m.score(Xte, yte) > 0.8


def test_stochastic_varpro(friedman):
    X, y, Xte, yte = friedman
    # stochastic VarPro (Eq. III.46) wants minibatches much larger than M and tau ~ lambda
    m = VarProSHLRegressor(width=32, batch_size=150, alpha=1e-2, learning_rate=1e-3, max_iter=20,
                           random_state=0, device="cpu").fit(X, y)
    assert m.n_iter_ == 20 and m.loss_curve_[-1] < 0.5 * m.loss_curve_[0]
    assert m.score(Xte, yte) > 0.8


def test_beats_random_features(friedman):
    """Training the features (VarPro) improves on the ridge regression with the initial random features."""
    X, y, Xte, yte = friedman
    rf = VarProSHLRegressor(width=64, max_iter=1, learning_rate=1e-12, random_state=0, device="cpu").fit(X, y)
    vp = VarProSHLRegressor(width=64, random_state=0, device="cpu").fit(X, y)
    assert vp.score(Xte, yte) > rf.score(Xte, yte) + 0.02


def test_activations(friedman):
    X, y, _, _ = friedman
    for act in ("tanh", "cos", "silu"):
        m = VarProSHLRegressor(width=16, activation=act, max_iter=5, random_state=0, device="cpu").fit(X, y)
        Phi, _, _ = features(torch.as_tensor(m.features_), torch.as_tensor(X), act, "euclidean")
        raw = (Phi.numpy() @ m.outer_weights_ / 16)[:, 0]
        np.testing.assert_allclose((m.predict(X) - m.y_mean_) / m.y_scale_, raw, rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------------------------------------- alpha='auto'
# (the leave-one-out path it uses: test_flows_ridge.py)


def test_auto_alpha_estimator_records_its_path():
    X, y = make_friedman1(n_samples=150, noise=0.5, random_state=0)
    X = StandardScaler().fit_transform(X)
    grid = [1e-3, 1e-2, 1e-1]
    m = VarProSHLRegressor(alpha="auto", alphas=grid, max_iter=20, tol=0, early_stopping=False, random_state=0,
                           device="cpu").fit(X, y)
    assert m.alpha_path_.shape == (m.n_iter_,)
    assert set(np.round(m.alpha_path_, 12)) <= set(grid) and m.alpha_ in grid
    # the final model is the exact projection at alpha_ on the final features
    Xb = np.c_[X, np.ones(len(X))]
    Phi = np.maximum(Xb @ m.features_.T, 0.0)
    Ys = ((y - m.y_mean_) / m.y_scale_)[:, None]
    u = ridge_projection(torch.as_tensor(Phi), torch.as_tensor(Ys), m.alpha_).numpy()
    np.testing.assert_allclose(m.outer_weights_, u, rtol=1e-6, atol=1e-8)
    # a fixed float keeps the theory's fixed-lambda flow
    fixed = VarProSHLRegressor(alpha=1e-2, max_iter=5, tol=0, early_stopping=False, random_state=0,
                               device="cpu").fit(X, y)
    assert fixed.alpha_ == 1e-2 and np.all(fixed.alpha_path_ == 1e-2)
    with pytest.raises(ValueError, match="alphas"):
        VarProSHLRegressor(alpha="auto", alphas=[0.1, -1.0], max_iter=2).fit(X, y)


def test_auto_alpha_with_early_stopping_chooses_on_the_held_out_rows():
    """With early stopping the strength is chosen by the error on the held-out rows, which neither the projection
    nor the features have seen; the fitted model keeps no data."""
    X, y = make_friedman1(n_samples=200, noise=0.5, random_state=0)
    X = StandardScaler().fit_transform(X)
    grid = [1e-4, 1e-2, 1.0]
    m = VarProSHLRegressor(alpha="auto", alphas=grid, max_iter=30, random_state=0, device="cpu").fit(X, y)
    assert m.early_stopping and set(np.round(m.alpha_path_, 12)) <= set(grid)
    assert m.flow_.validation is None
    assert m.score(X, y) > 0.8
