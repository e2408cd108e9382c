"""skflow.diagnostics.bandwidth: the exact leave-one-out path of kernel ridge, and the length scale it selects."""

import numpy as np
import pytest
import torch

from skflow.diagnostics.bandwidth import kernel_ridge_loo_errors, select_length_scale
from skflow.diagnostics.kernels import gaussian_kernel


def _gauss(D2, ls):
    return torch.exp(-D2 / (2 * ls * ls))


def test_loo_errors_match_refitting_without_each_row():
    rng = np.random.RandomState(0)
    X = rng.randn(25, 3)
    Y = np.column_stack([np.sin(X[:, 0]), X[:, 1] ** 2]) + 0.1 * rng.randn(25, 2)
    K = gaussian_kernel(torch.as_tensor(X), length_scale=1.3)
    alphas = [1e-3, 1e-1, 1.0]
    fast = kernel_ridge_loo_errors(K, torch.as_tensor(Y), alphas)
    for a, err in zip(alphas, fast):
        res = []
        for i in range(len(X)):
            keep = np.arange(len(X)) != i
            Kk = K.numpy()[np.ix_(keep, keep)]
            c = np.linalg.solve(Kk + a * np.eye(keep.sum()), Y[keep])
            res.append(Y[i] - K.numpy()[i, keep] @ c)
        assert err == pytest.approx(np.mean(np.square(res)), rel=1e-8)


def test_selection_is_the_least_loo_error_and_prefers_strong_ridge_for_pure_noise():
    """The choice is the argmin of its table; on a noiseless smooth target it takes a weak ridge, on a target
    independent of the inputs it takes the strongest ridge of the grid (predict ~0 rather than fit noise)."""
    rng = np.random.RandomState(1)
    X = rng.uniform(-3, 3, size=(200, 2))
    scales = [0.25, 0.5, 1.0, 2.0, 4.0]
    ls, alpha, table = select_length_scale(X, np.sin(X[:, :1]), _gauss, scales)
    assert table.min() == table[scales.index(ls)].min()
    assert alpha < 1e-2
    _, alpha_noise, _ = select_length_scale(X, rng.randn(200, 1), _gauss, scales)
    assert alpha_noise > 1.0


def test_selection_depends_on_the_data_only_and_subsamples():
    rng = np.random.RandomState(2)
    X, Y = rng.randn(60, 2), rng.randn(60, 1)
    a = select_length_scale(X, Y, _gauss, [0.5, 1.0, 2.0], max_samples=40)
    b = select_length_scale(X, Y, _gauss, [0.5, 1.0, 2.0], max_samples=40)
    assert a[0] == b[0] and a[1] == b[1]
    np.testing.assert_array_equal(a[2], b[2])


@pytest.mark.parametrize("kind, nu", [("gaussian", 1.5), ("matern", 0.5), ("matern", 2.5)])
def test_kernel_from_sq_distances_is_the_closed_form_kernel(kind, nu):
    from skflow.diagnostics.bandwidth import kernel_from_sq_distances
    from skflow.diagnostics.kernels import kernel_matrix, squared_distances

    X = torch.as_tensor(np.random.RandomState(3).randn(30, 4))
    K = kernel_from_sq_distances(squared_distances(X), 1.7, kind, nu, amplitude=0.5)
    torch.testing.assert_close(K, 0.5 * kernel_matrix(X, kind, 1.7, nu), rtol=1e-12, atol=1e-14)
