"""Kernel matrices, closed-form (infinite-width) kernels and smallest eigenvalues, as pure functions.

The closed forms are the limits of the random-feature kernels the estimators build:

* ``w ~ N(0, I / l^2)``, ``b ~ U[0, 2 pi]``: ``E[2 cos(w.x + b) cos(w.y + b)] = gaussian_kernel(x, y, l)``;
* ``w`` a multivariate Student-t with ``2 nu`` degrees of freedom scaled by ``1/l``: the same expectation is
  ``matern_kernel(x, y, l, nu)`` (the spectral density of the Matern kernel, thesis Eq. II.33-34).

With ``sigma = cos`` and ``b ~ U[0, pi]`` the mean-field SHL kernel ``k^1`` of Eq. II.38 at initialisation is
``1/2`` of these (Cor. II.5.1), with ``l = 1 / rho`` (:func:`shl_limit_kernel`).

Functions taking arrays accept NumPy arrays or torch tensors and return the same kind.
"""

import math

import numpy as np
import torch
from scipy import special

from .._arrays import as_float64_tensor

__all__ = [
    "data_separation",
    "exact_kernel_lambda_min",
    "gaussian_kernel",
    "gram_lambda_min",
    "kernel_lambda_min",
    "kernel_matrix",
    "lambda_min",
    "matern_kernel",
    "shl_limit_kernel",
    "squared_distances",
    "top_eigenvalues",
]


def _as_tensor(A):
    if isinstance(A, torch.Tensor):
        return A, True
    return as_float64_tensor(A), False


def squared_distances(X, Y=None):
    """Return ``|x_i - y_j|^2`` for every pair of rows, clamped at 0 against round-off.

    Parameters
    ----------
    X : tensor of shape (n_samples_X, n_features)
        The first set of points.
    Y : tensor of shape (n_samples_Y, n_features) or None, default=None
        The second set of points; None is ``X``.

    Returns
    -------
    tensor of shape (n_samples_X, n_samples_Y)
        The squared distances.
    """
    Y = X if Y is None else Y
    d2 = (X * X).sum(1)[:, None] + (Y * Y).sum(1)[None, :] - 2.0 * X @ Y.T
    return d2.clamp_min_(0.0)


def gaussian_kernel(X, Y=None, length_scale=1.0):
    """Gaussian kernel matrix ``k(x, y) = exp(-|x - y|^2 / (2 l^2))``.

    Parameters
    ----------
    X : array-like or tensor of shape (n_samples_X, n_features)
        The first set of points.
    Y : array-like or tensor of shape (n_samples_Y, n_features) or None, default=None
        The second set of points; None is ``X``.
    length_scale : float, default=1.0
        The length scale ``l``.

    Returns
    -------
    ndarray or tensor of shape (n_samples_X, n_samples_Y)
        The kernel matrix, a tensor for tensor inputs.
    """
    Xt, is_t = _as_tensor(X)
    Yt = Xt if Y is None else _as_tensor(Y)[0].to(Xt)
    K = torch.exp(-squared_distances(Xt, Yt) / (2.0 * length_scale**2))
    return K if is_t else K.numpy()


def matern_of_distance(r, length_scale=1.0, nu=1.5):
    """The Matern correlation ``2^{1-nu}/Gamma(nu) z^nu K_nu(z)``, ``z = sqrt(2 nu) r / l``, of distances ``r``.

    Parameters
    ----------
    r : ndarray
        Distances (non-negative), float64.
    length_scale : float, default=1.0
        The length scale ``l``.
    nu : float, default=1.5
        The smoothness (finite).

    Returns
    -------
    ndarray of the shape of ``r``
        The kernel values, 1 at ``r = 0``.
    """
    z = math.sqrt(2.0 * nu) * r / length_scale
    with np.errstate(invalid="ignore", divide="ignore"):
        K = (2.0 ** (1.0 - nu) / special.gamma(nu)) * z**nu * special.kv(nu, z)
    K[z == 0] = 1.0
    return np.nan_to_num(K, nan=1.0)


def matern_kernel(X, Y=None, length_scale=1.0, nu=1.5):
    """Matern kernel matrix ``2^{1-nu}/Gamma(nu) (sqrt(2 nu) r / l)^nu K_nu(sqrt(2 nu) r / l)``.

    Parameters
    ----------
    X : array-like or tensor of shape (n_samples_X, n_features)
        The first set of points.
    Y : array-like or tensor of shape (n_samples_Y, n_features) or None, default=None
        The second set of points; None is ``X``.
    length_scale : float, default=1.0
        The length scale ``l``.
    nu : float, default=1.5
        The smoothness; ``nu=inf`` is the Gaussian kernel.

    Returns
    -------
    ndarray or tensor of shape (n_samples_X, n_samples_Y)
        The kernel matrix, a tensor for tensor inputs.
    """
    if math.isinf(nu):
        return gaussian_kernel(X, Y, length_scale)
    Xt, is_t = _as_tensor(X)
    Yt = Xt if Y is None else _as_tensor(Y)[0].to(Xt)
    K = matern_of_distance(torch.sqrt(squared_distances(Xt, Yt)).cpu().double().numpy(), length_scale, nu)
    if is_t:
        return torch.as_tensor(K, dtype=Xt.dtype, device=Xt.device)
    return K


def kernel_matrix(X, kernel="gaussian", length_scale=1.0, nu=1.5, Y=None):
    """Kernel matrix of :func:`gaussian_kernel` or :func:`matern_kernel`, chosen by name.

    Parameters
    ----------
    X : array-like or tensor of shape (n_samples_X, n_features)
        The first set of points.
    kernel : {'gaussian', 'matern'}, default='gaussian'
        The kernel.
    length_scale : float, default=1.0
        The length scale ``l``.
    nu : float, default=1.5
        Smoothness of the Matern kernel.
    Y : array-like or tensor of shape (n_samples_Y, n_features) or None, default=None
        The second set of points; None is ``X``.

    Returns
    -------
    ndarray or tensor of shape (n_samples_X, n_samples_Y)
        The kernel matrix, a tensor for tensor inputs.
    """
    if kernel == "gaussian":
        return gaussian_kernel(X, Y, length_scale)
    if kernel == "matern":
        return matern_kernel(X, Y, length_scale, nu)
    raise ValueError(f"kernel must be 'gaussian' or 'matern', got {kernel!r}")


def root_weights(weights, n, like):
    """``sqrt(w / mean(w))`` as a float64 tensor of shape (n,) on ``like``'s device, or None for ``weights=None``."""
    if weights is None:
        return None
    w, _ = _as_tensor(weights)
    w = w.to(device=like.device, dtype=torch.float64).reshape(n)
    return (w / w.mean()).clamp(min=0.0).sqrt()


def lambda_min(K, weights=None):
    """Smallest eigenvalue of a symmetric PSD matrix, computed in float64 (0 for an empty matrix).

    Parameters
    ----------
    K : array-like or tensor of shape (n, n)
        The matrix (symmetrised before the eigendecomposition).
    weights : array-like or tensor of shape (n,), default=None
        Sample weights of the rows: the matrix of the weighted empirical measure, ``D^(1/2) K D^(1/2)`` with
        ``D = diag(w / mean(w))`` (``../SPEC.md`` §5; the same eigenvalues as ``K D``). None: equal weights.

    Returns
    -------
    float
        Its smallest eigenvalue.
    """
    Kt, _ = _as_tensor(K)
    Kt = Kt.double()
    if Kt.numel() == 0:
        return 0.0
    root = root_weights(weights, Kt.shape[0], Kt)
    if root is not None:
        Kt = root[:, None] * Kt * root[None, :]
    Kt = 0.5 * (Kt + Kt.T)
    return float(torch.linalg.eigvalsh(Kt)[0])


def gram_lambda_min(Phi, scale=1.0, weights=None):
    """``lambda_min(scale * Phi Phi^T)`` for a feature matrix ``Phi`` (N, M), in float64.

    Exactly 0 when ``M < N``: the matrix has rank at most ``M``, and the round-off value is not reported.

    Parameters
    ----------
    Phi : tensor of shape (N, M)
        The feature matrix.
    scale : float, default=1.0
        The factor of ``Phi Phi^T``.
    weights : array-like or tensor of shape (n,), default=None
        Sample weights of the rows: the matrix of the weighted empirical measure, ``D^(1/2) K D^(1/2)`` with
        ``D = diag(w / mean(w))`` (``../SPEC.md`` §5; the same eigenvalues as ``K D``). None: equal weights.

    Returns
    -------
    float
        The smallest eigenvalue, at least 0.
    """
    if Phi.shape[1] < Phi.shape[0]:
        return 0.0
    P = Phi.double()
    return max(lambda_min(scale * (P @ P.T), weights), 0.0)


def top_eigenvalues(Phi, k=10, weights=None):
    """Top ``k`` eigenvalues (descending) of ``Phi^T Phi / (N M)`` for a feature matrix ``Phi`` (N, M).

    Uses whichever of ``Phi^T Phi`` (M x M) and ``Phi Phi^T`` (N x N) is smaller: they share their nonzero
    eigenvalues. This is the tangent kernel of VarPro (thesis Eq. III.24).

    Parameters
    ----------
    Phi : tensor of shape (N, M)
        The feature matrix.
    k : int, default=10
        Number of eigenvalues.
    weights : tensor of shape (N,), default=None
        Sample weights of the rows: the kernel ``Phi^T diag(w) Phi / (sum(w) M)`` of the weighted empirical
        measure (``../SPEC.md`` §5). None: equal weights.

    Returns
    -------
    tensor of shape (min(k, N, M),)
        The top eigenvalues in float64, descending, clamped at 0.
    """
    P = Phi.double()
    N, M = P.shape
    root = root_weights(weights, N, P)
    if root is not None:
        P = P * root[:, None]
    G = (P.T @ P) if M <= N else (P @ P.T)
    ev = torch.linalg.eigvalsh(G / (N * M)).flip(0)
    return ev[:k].clamp(min=0.0)


def shl_limit_kernel(X, feature_init="gaussian", feature_scale=1.0, nu=1.5, Y=None):
    """Infinite-width kernel ``k^1(x, y) = E[cos(w.x + b) cos(w.y + b)]``, ``b ~ U[0, pi]`` (Cor. II.5.1).

    'gaussian' (``w ~ N(0, rho^2 I)``): ``exp(-rho^2 |x - y|^2 / 2) / 2``; 'student': half the Matern-``nu``
    kernel with length scale ``1 / rho``.

    Parameters
    ----------
    X : array-like or tensor of shape (n_samples_X, n_features)
        The first set of points.
    feature_init : {'gaussian', 'student'}, default='gaussian'
        The law of the inner weights ``w``.
    feature_scale : float, default=1.0
        Its scale ``rho``.
    nu : float, default=1.5
        Smoothness of the Matern kernel of 'student'.
    Y : array-like or tensor of shape (n_samples_Y, n_features) or None, default=None
        The second set of points; None is ``X``.

    Returns
    -------
    ndarray or tensor of shape (n_samples_X, n_samples_Y)
        The kernel matrix, a tensor for tensor inputs.
    """
    length_scale = 1.0 / feature_scale
    if feature_init == "gaussian":
        return 0.5 * gaussian_kernel(X, Y, length_scale)
    if feature_init == "student":
        return 0.5 * matern_kernel(X, Y, length_scale, nu)
    raise ValueError(f"feature_init must be 'gaussian' or 'student', got {feature_init!r}")


def kernel_lambda_min(X, feature_init="gaussian", feature_scale=1.0, nu=1.5, weights=None):
    """``lambda_min`` of the infinite-width SHL kernel matrix ``(k^1(x_i, x_j))_ij`` on the inputs ``X``.

    Parameters
    ----------
    X : array-like or tensor of shape (n_samples, n_features)
        The inputs.
    feature_init : {'gaussian', 'student'}, default='gaussian'
        The law of the inner weights (see :func:`shl_limit_kernel`).
    feature_scale : float, default=1.0
        Its scale ``rho``.
    nu : float, default=1.5
        Smoothness of the Matern kernel of 'student'.
    weights : array-like or tensor of shape (n,), default=None
        Sample weights of the rows: the matrix of the weighted empirical measure, ``D^(1/2) K D^(1/2)`` with
        ``D = diag(w / mean(w))`` (``../SPEC.md`` §5; the same eigenvalues as ``K D``). None: equal weights.

    Returns
    -------
    float
        The smallest eigenvalue.
    """
    return lambda_min(shl_limit_kernel(X, feature_init, feature_scale, nu), weights)


def exact_kernel_lambda_min(X, kernel="gaussian", length_scale=1.0, nu=1.5, weights=None):
    """``lambda_min`` of the closed-form kernel matrix ``(k(x_i, x_j))`` (the limit ``M -> inf``; Eq. II.30, II.32).

    Parameters
    ----------
    X : array-like or tensor of shape (n_samples, n_features)
        The inputs.
    kernel : {'gaussian', 'matern'}, default='gaussian'
        The kernel.
    length_scale : float, default=1.0
        The length scale ``l``.
    nu : float, default=1.5
        Smoothness of the Matern kernel.
    weights : array-like or tensor of shape (n,), default=None
        Sample weights of the rows: the matrix of the weighted empirical measure, ``D^(1/2) K D^(1/2)`` with
        ``D = diag(w / mean(w))`` (``../SPEC.md`` §5; the same eigenvalues as ``K D``). None: equal weights.

    Returns
    -------
    float
        The smallest eigenvalue, at least 0.
    """
    return max(lambda_min(kernel_matrix(X, kernel, length_scale, nu), weights), 0.0)


def data_separation(X, chunk=None):
    """Data separation ``delta = min_{i != j} |x_i - x_j|`` (Prop. II.4.4), exact.

    Computed in row chunks: ``O(N^2 d)`` time, ``O(chunk N)`` memory.

    Parameters
    ----------
    X : array-like or tensor of shape (N, d)
        The inputs.
    chunk : int or None, default=None
        Rows per chunk; None: chunks of about 32 MiB of distances.

    Returns
    -------
    float
        ``delta``: 0.0 when two rows coincide, ``inf`` for fewer than two rows.
    """
    Xt = X.double() if isinstance(X, torch.Tensor) else as_float64_tensor(X)
    n = Xt.shape[0]
    if n < 2:
        return float("inf")
    best = torch.tensor(float("inf"), dtype=Xt.dtype, device=Xt.device)
    chunk = max(1, 2**22 // n) if chunk is None else int(chunk)
    for start in range(0, n, chunk):
        blk = Xt[start:start + chunk]
        d2 = squared_distances(blk, Xt)
        rows = torch.arange(blk.shape[0], device=Xt.device)
        d2[rows, rows + start] = float("inf")
        # the expansion above loses digits for close points: recompute the closest pair of each row exactly
        j = d2.argmin(1)
        exact = ((blk - Xt[j]) ** 2).sum(1)
        best = torch.minimum(best, exact.min())
    return float(torch.sqrt(best))
