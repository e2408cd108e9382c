"""A bandwidth chosen by the limit kernel, before a single step (``../SPEC.md`` §5).

At initialisation every layer of a NODE sees the lifted inputs ``z(0) = (x, 0)``, and its finite-width kernel
concentrates on a closed form (Gaussian or Matern, see :mod:`~skflow.diagnostics.kernels`). In the lazy regime
the trained model predicts like kernel ridge regression with that kernel, so the kernel's length scale can be
chosen on the data by the *exact* leave-one-out error of kernel ridge, over a grid of length scales and of
ridge strengths: one eigendecomposition per length scale gives the leave-one-out residuals of every ridge
strength at once (as scikit-learn's ``RidgeCV`` / ``_RidgeGCV`` does for linear ridge).

For ``(K + a I) c = Y`` with ``K = Q diag(s) Q^T`` the leave-one-out residual of row ``i`` is
``c_i / [(K + a I)^{-1}]_{ii}``, ``c = Q diag(1 / (s + a)) Q^T Y`` (the classic identity for linear
smoothers). With row weights ``w`` the same holds for the weighted problem after the change of variables
``sqrt(w_i)`` on rows and columns (not used yet).

Functions of tensors; no engine or estimator is imported.
"""

import math

import numpy as np
import torch

from .._arrays import seeded_subsample, to_numpy
from .kernels import matern_of_distance, squared_distances

__all__ = ["DEFAULT_LENGTH_GRID", "DEFAULT_RIDGE_GRID", "kernel_from_sq_distances", "kernel_ridge_loo_errors",
           "median_length_scale", "select_length_scale"]

#: ridge strengths of the leave-one-out search, relative to the mean diagonal of the kernel matrix
DEFAULT_RIDGE_GRID = tuple(np.logspace(-5, 1, 13))


#: length scales of the search, as multiples of the median pairwise distance of the inputs
DEFAULT_LENGTH_GRID = tuple(2.0 ** np.arange(-1.5, 1.51, 0.5))


def kernel_from_sq_distances(D2, length_scale, kind="gaussian", nu=1.5, amplitude=1.0):
    """``amplitude * k(r)`` from squared distances ``D2``: the Gaussian ``exp(-r^2 / (2 l^2))`` or the Matern-``nu``
    kernel of length scale ``l`` (the closed forms of :mod:`skflow.diagnostics.kernels`).

    Parameters
    ----------
    D2 : Tensor of shape (n, m)
        Squared distances.
    length_scale : float
        ``l``.
    kind : {'gaussian', 'matern'}, default='gaussian'
        The kernel.
    nu : float, default=1.5
        Smoothness of the Matern kernel.
    amplitude : float, default=1.0
        A constant factor (1/2 for the NODE's limit kernel).

    Returns
    -------
    Tensor of shape (n, m)
        The kernel matrix, in float64.
    """
    D2 = torch.as_tensor(D2, dtype=torch.float64)
    if kind == "gaussian" or math.isinf(nu):
        return amplitude * torch.exp(-D2 / (2.0 * length_scale**2))
    return amplitude * torch.as_tensor(matern_of_distance(torch.sqrt(D2.clamp_min(0.0)).numpy(), length_scale, nu))


def kernel_ridge_loo_errors(K, Y, alphas):
    """Mean squared leave-one-out residuals of kernel ridge ``(K + a I) c = Y`` for every ``a`` in ``alphas``.

    Parameters
    ----------
    K : Tensor of shape (n, n)
        Symmetric positive semi-definite kernel matrix.
    Y : Tensor of shape (n, n_outputs)
        Targets.
    alphas : sequence of float
        Ridge strengths (positive).

    Returns
    -------
    ndarray of shape (len(alphas),)
        ``mean_{i, j} (y_ij - f_{-i}(x_i)_j)^2`` for each ridge strength, in float64.
    """
    K = torch.as_tensor(K, dtype=torch.float64)
    Y = torch.as_tensor(Y, dtype=torch.float64)
    s, Q = torch.linalg.eigh(K)
    s = s.clamp_min(0.0)
    QtY = Q.T @ Y
    Q2 = Q * Q
    errors = []
    for a in alphas:
        d = 1.0 / (s + float(a))
        C = Q @ (d[:, None] * QtY)
        diag = Q2 @ d
        E = C / diag[:, None]
        errors.append(float((E * E).mean()))
    return np.asarray(errors)


def select_length_scale(X, Y, kernel, length_scales, alphas=DEFAULT_RIDGE_GRID, max_samples=1000):
    """The length scale (and ridge strength) of least exact leave-one-out error of kernel ridge.

    Parameters
    ----------
    X : Tensor or ndarray of shape (n, d)
        Inputs (standardised as for the fit).
    Y : Tensor or ndarray of shape (n, n_outputs)
        Targets as the model fits them (standardised targets, or one-hot codes).
    kernel : callable
        ``kernel(sq_dists, length_scale) -> K``: the closed-form kernel as a function of the squared distances.
    length_scales : sequence of float
        Candidate length scales.
    alphas : sequence of float, default=DEFAULT_RIDGE_GRID
        Ridge strengths, relative to the mean diagonal of each kernel matrix.
    max_samples : int, default=1000
        At most this many rows (a fixed subsample drawn with ``RandomState(0)``, so that the choice depends on
        the data only): the cost is ``O(max_samples^3)`` per length scale.

    Returns
    -------
    length_scale : float
        The chosen length scale.
    alpha : float
        The chosen ridge strength (absolute, i.e. times the mean diagonal).
    errors : ndarray of shape (len(length_scales), len(alphas))
        The leave-one-out errors of the grid.
    """
    X = torch.as_tensor(X).detach().to("cpu", torch.float64)
    Y = torch.as_tensor(Y).detach().to("cpu", torch.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    idx = seeded_subsample(X.shape[0], max_samples)
    if idx is not None:
        X, Y = X[torch.as_tensor(idx)], Y[torch.as_tensor(idx)]
    D2 = squared_distances(X)
    table, scales = [], []
    for ls in length_scales:
        K = kernel(D2, float(ls))
        scale = float(torch.diagonal(K).mean()) or 1.0
        scales.append(scale)
        table.append(kernel_ridge_loo_errors(K, Y, [a * scale for a in alphas]))
    table = np.asarray(table)
    i, j = np.unravel_index(np.nanargmin(table), table.shape)
    return float(length_scales[i]), float(alphas[j] * scales[i]), table


def median_length_scale(X, max_samples=1000, factor=1.0):
    """Data-driven length scale: ``factor * median_{i < j} |x_i - x_j|`` on a fixed subsample.

    The subsample (at most ``max_samples`` rows, drawn with ``RandomState(0)`` so the rule depends on the
    data only) keeps the cost at ``O(max_samples^2 d)``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The inputs.
    max_samples : int, default=1000
        Size of the subsample.
    factor : float, default=1.0
        The factor of the median.

    Returns
    -------
    float
        The length scale; 1.0 when all pairwise distances vanish.
    """
    X = to_numpy(X)
    idx = seeded_subsample(X.shape[0], max_samples)
    if idx is not None:
        X = X[idx]
    if X.shape[0] < 2:
        return 1.0
    d2 = squared_distances(torch.as_tensor(X)).numpy()
    iu = np.triu_indices(X.shape[0], k=1)
    med = float(np.sqrt(np.median(d2[iu])))
    return factor * med if med > 0 else 1.0
