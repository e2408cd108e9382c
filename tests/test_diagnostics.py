"""skflow.diagnostics: conditional OT, limit kernels and the convergence report."""

import itertools
import math

import numpy as np
import pytest
import torch

from skflow.diagnostics import (
    conditional_wasserstein,
    convergence_report,
    gaussian_kernel,
    kernel_lambda_min,
    lambda_min,
    matern_kernel,
    shl_limit_kernel,
)


def _brute_force_w2(A, B):
    """W2 between equally weighted clouds by enumerating every permutation."""
    M = A.shape[0]
    best = min(((A - B[list(p)]) ** 2).sum(1).mean() for p in itertools.permutations(range(M)))
    return math.sqrt(best)


def test_conditional_wasserstein_matches_brute_force():
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(3, 6, 4)), rng.normal(size=(3, 6, 4))
    expected = math.sqrt(np.mean([_brute_force_w2(A[k], B[k]) ** 2 for k in range(3)]))
    assert conditional_wasserstein(A, B) == pytest.approx(expected, rel=1e-12)


def test_conditional_wasserstein_is_conditional():
    """Permuting particles within a layer costs nothing; moving them across layers does."""
    rng = np.random.default_rng(1)
    A = rng.normal(size=(4, 10, 3))
    within = np.stack([A[k][rng.permutation(10)] for k in range(4)])
    assert conditional_wasserstein(A, within) == pytest.approx(0.0, abs=1e-7)
    across = A[[1, 0, 3, 2]]
    assert conditional_wasserstein(A, across) > 0.5
    # ... whereas the unconditional W2 of the pooled clouds does not see the swap
    pooled = conditional_wasserstein(A.reshape(1, 40, 3), across.reshape(1, 40, 3))
    assert pooled == pytest.approx(0.0, abs=1e-7)


def test_conditional_wasserstein_one_dimensional_closed_form():
    """In 1-D the optimal coupling is monotone: W2^2 is the mean squared gap of the sorted samples."""
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(2, 50, 1)), rng.normal(loc=1.0, size=(2, 50, 1))
    expected = math.sqrt(np.mean([np.mean((np.sort(a[k, :, 0]) - np.sort(b[k, :, 0])) ** 2) for k in range(2)]))
    assert conditional_wasserstein(a, b) == pytest.approx(expected, rel=1e-12)


def test_conditional_wasserstein_accepts_u_w_b_tuples_and_tensors():
    rng = np.random.default_rng(3)
    U, W, b = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5))
    U2 = U + 1.0
    d_np = conditional_wasserstein((U, W, b), (U2, W, b))
    d_t = conditional_wasserstein(tuple(torch.as_tensor(x) for x in (U, W, b)), (U2, W, b))
    assert d_np == pytest.approx(math.sqrt(3.0)) and d_t == pytest.approx(d_np)
    assert conditional_wasserstein((U, W, b), (U, W, b)) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        conditional_wasserstein(U, U[:, :4])


def test_limit_kernels_closed_form():
    rng = np.random.default_rng(4)
    X = torch.as_tensor(rng.normal(size=(12, 3)))
    K = shl_limit_kernel(X, "gaussian", 0.5)
    torch.testing.assert_close(torch.diagonal(K), torch.full((12,), 0.5, dtype=K.dtype))
    d2 = ((X[:, None] - X[None]) ** 2).sum(-1)
    torch.testing.assert_close(K, 0.5 * torch.exp(-0.25 * d2 / 2))
    torch.testing.assert_close(shl_limit_kernel(X, "student", 0.5, nu=1.5), 0.5 * matern_kernel(X, None, 2.0, 1.5))
    assert kernel_lambda_min(X, "gaussian", 0.5) == pytest.approx(lambda_min(0.5 * gaussian_kernel(X, None, 2.0)))
    # Matern 1/2 is the exponential kernel
    d = torch.sqrt(d2)
    torch.testing.assert_close(matern_kernel(X, None, 2.0, 0.5), torch.exp(-d / 2.0))
    with pytest.raises(ValueError, match="feature_init"):
        shl_limit_kernel(X, "uniform")


def test_convergence_report_on_an_exponential_curve():
    t = 0.1 * np.arange(100)
    R = 2.0 * np.exp(-0.7 * t)
    pl = np.full(100, 0.7)
    disp = np.sqrt(t)
    rep = convergence_report(R, t, pl, lambda_0=0.02, n_samples=50, output_scale=3.0, distance=1.5,
                             displacement_curve=disp)
    assert rep["observed_rate"] == pytest.approx(0.7)
    assert rep["pl_constant"] == pytest.approx(0.7)
    assert rep["pl_bound_holds"]
    assert rep["kernel_rate"] == pytest.approx(2 * 9 * 0.02 / 50)
    assert rep["distance_travelled"] == 1.5 and rep["max_displacement"] == pytest.approx(disp.max())
    assert rep["local_pl_condition"] == (2.0 < 0.7 * disp.max() ** 2 / 4)
    slower = convergence_report(2.0 * np.exp(-0.5 * t), t, pl, 0.0, 50)
    assert not slower["pl_bound_holds"]  # a curve above R(0) exp(-m t) is flagged
