"""Closed-form (infinite-width) kernels and their smallest eigenvalue on given inputs.

These are the limits of the random-feature kernels the estimators build:

* ``w ~ N(0, I / l^2)``, ``b ~ U[0, 2 pi]``: ``E[2 cos(w.x + b) cos(w.y + b)] = gaussian_kernel(x, y, l)``;
* ``w = g / (l sqrt(chi2_{2 nu} / (2 nu)))`` (multivariate Student-t, ``2 nu`` degrees of freedom, scaled by
  ``1/l``): the same expectation is ``matern_kernel(x, y, l, nu)`` (the spectral density of the Matern
  kernel is a multivariate Student-t density, thesis Eq. II.33-34).

With ``sigma = cos`` and ``b ~ U[0, pi]`` the mean-field SHL kernel ``k^1`` of Eq. II.38 at initialisation is
``1/2`` of these (Cor. II.5.1), with ``l = 1 / rho``.

All functions accept NumPy arrays or torch tensors and return the same kind.
"""

import math

import numpy as np
import torch
from scipy import special

__all__ = [
    "gaussian_kernel",
    "matern_kernel",
    "kernel_matrix",
    "lambda_min",
    "sample_spectral",
]


def _as_tensor(A):
    if isinstance(A, torch.Tensor):
        return A, True
    return torch.as_tensor(np.asarray(A, dtype=np.float64)), False


def _sqdist(X, Y):
    d2 = (X * X).sum(1)[:, None] + (Y * Y).sum(1)[None, :] - 2.0 * X @ Y.T
    return d2.clamp_min_(0.0)


def gaussian_kernel(X, Y=None, length_scale=1.0):
    """``k(x, y) = exp(-|x - y|^2 / (2 l^2))``, shape ``(len(X), len(Y))``."""
    Xt, is_t = _as_tensor(X)
    Yt = Xt if Y is None else _as_tensor(Y)[0].to(Xt)
    K = torch.exp(-_sqdist(Xt, Yt) / (2.0 * length_scale**2))
    return K if is_t else K.numpy()


def matern_kernel(X, Y=None, length_scale=1.0, nu=1.5):
    """Matern kernel ``2^{1-nu}/Gamma(nu) (sqrt(2 nu) r / l)^nu K_nu(sqrt(2 nu) r / l)``; ``nu=inf`` is Gaussian."""
    if math.isinf(nu):
        return gaussian_kernel(X, Y, length_scale)
    Xt, is_t = _as_tensor(X)
    Yt = Xt if Y is None else _as_tensor(Y)[0].to(Xt)
    r = torch.sqrt(_sqdist(Xt, Yt)).cpu().double().numpy()
    z = math.sqrt(2.0 * nu) * r / length_scale
    with np.errstate(invalid="ignore", divide="ignore"):
        K = (2.0 ** (1.0 - nu) / special.gamma(nu)) * z**nu * special.kv(nu, z)
    K[z == 0] = 1.0
    K = np.nan_to_num(K, nan=1.0)
    if is_t:
        return torch.as_tensor(K, dtype=Xt.dtype, device=Xt.device)
    return K


def kernel_matrix(X, kernel="gaussian", length_scale=1.0, nu=1.5, Y=None):
    """Dispatch to :func:`gaussian_kernel` or :func:`matern_kernel` by name."""
    if kernel == "gaussian":
        return gaussian_kernel(X, Y, length_scale)
    if kernel == "matern":
        return matern_kernel(X, Y, length_scale, nu)
    raise ValueError(f"kernel must be 'gaussian' or 'matern', got {kernel!r}")


def lambda_min(K):
    """Smallest eigenvalue of a symmetric PSD matrix, computed in float64 (0 for an empty matrix)."""
    Kt, _ = _as_tensor(K)
    Kt = Kt.double()
    if Kt.numel() == 0:
        return 0.0
    Kt = 0.5 * (Kt + Kt.T)
    return float(torch.linalg.eigvalsh(Kt)[0])


def sample_spectral(n, dim, kernel="gaussian", length_scale=1.0, nu=1.5, generator=None, dtype=torch.float64):
    """Draw ``n`` frequencies in ``R^dim`` from the spectral measure of the kernel (rows of the result).

    'gaussian': ``N(0, I / l^2)``; 'matern': multivariate Student-t with ``2 nu`` degrees of freedom,
    scaled by ``1/l``. Drawn on the CPU with ``generator``.
    """
    g = torch.randn(n, dim, generator=generator, dtype=dtype)
    if kernel == "gaussian":
        return g / length_scale
    if kernel == "matern":
        # chi2 with k dof = 2 * Gamma(k/2, 1); torch's Gamma takes no generator, so use inverse-CDF
        # sampling from uniforms to keep the draw seeded by `generator`
        u = torch.rand(n, generator=generator, dtype=torch.float64).clamp_(1e-12, 1 - 1e-12).numpy()
        chi2 = special.gammaincinv(nu, u) * 2.0  # Gamma(nu, 1) * 2 = chi2 with 2 nu dof
        scale = torch.as_tensor(np.sqrt(chi2 / (2.0 * nu)), dtype=dtype)
        return g / (length_scale * scale[:, None])
    raise ValueError(f"kernel must be 'gaussian' or 'matern', got {kernel!r}")
