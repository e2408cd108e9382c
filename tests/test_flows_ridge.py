"""VarPro's ridge strength chosen by exact leave-one-out (alpha='auto')."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_friedman1
from sklearn.preprocessing import StandardScaler

from skflow import VarProSHLRegressor
from skflow.flows.varpro import ridge_loo_path, ridge_projection, select_ridge


def _brute_force_loo(Phi, Y, lam, c):
    """Refit the projection without each row in turn (same N in the normalisation, i.e. the same mu)."""
    N, M = Phi.shape
    total = 0.0
    for i in range(N):
        keep = np.arange(N) != i
        P, Yi = Phi[keep], Y[keep]
        G = P.T @ P / (N * M) + lam * np.eye(M)
        u = np.linalg.solve(G, P.T @ Yi / N + lam * c * np.ones((M, Y.shape[1])))
        total += ((Phi[i] @ u / M - Y[i]) ** 2).sum()
    return total / N


@pytest.mark.parametrize("regularization,c", [("biased", 0.0), ("unbiased", 1.0)])
@pytest.mark.parametrize("N,M", [(30, 12), (12, 30)])
def test_leave_one_out_path_matches_refitting(regularization, c, N, M):
    rng = np.random.default_rng(0)
    Phi, Y = rng.normal(size=(N, M)), rng.normal(size=(N, 2))
    lams = torch.tensor([1e-3, 1e-1, 1.0], dtype=torch.float64)
    loo, u = ridge_loo_path(torch.as_tensor(Phi), torch.as_tensor(Y), lams, regularization)
    expected = [_brute_force_loo(Phi, Y, float(lam), c) for lam in lams]
    np.testing.assert_allclose(loo.numpy(), expected, rtol=1e-9)
    # the projections on the path are the closed-form ridge solves
    for k, lam in enumerate(lams):
        direct = ridge_projection(torch.as_tensor(Phi), torch.as_tensor(Y), float(lam), regularization)
        np.testing.assert_allclose(u[k].numpy(), direct.numpy(), rtol=1e-8, atol=1e-10)


def test_select_ridge_picks_the_least_loo_error():
    rng = np.random.default_rng(1)
    Phi = torch.as_tensor(rng.normal(size=(40, 10)))
    Y = torch.as_tensor(rng.normal(size=(40, 1)))
    lams = torch.logspace(-4, 1, 11, dtype=torch.float64)
    lam, u = select_ridge(Phi, Y, lams)
    loo, path = ridge_loo_path(Phi, Y, lams)
    assert float(lam) == float(lams[torch.argmin(loo)])
    torch.testing.assert_close(u, path[torch.argmin(loo)])


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
    np.testing.assert_allclose(m.coef_, u, rtol=1e-6, atol=1e-8)
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
