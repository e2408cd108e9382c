"""skflow.flows._ridge: the ridge projection's exact leave-one-out path and the choice of the ridge strength.

VarProSHLRegressor(alpha='auto'), which uses them, is tested in test_varpro.py.
"""

import numpy as np
import pytest
import torch

from skflow.flows._ridge import ridge_loo_path, ridge_projection, select_ridge


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
