"""Pieces every engine shares: activations with their derivatives, the lift, spectral sampling, regulariser centres.

No engine imports another engine; they all import this module.
"""

import math

import numpy as np
import torch
from scipy import special

__all__ = ["ACTIVATIONS", "ACTIVATIONS_INPLACE", "lift", "regularizer_centre", "sample_spectral", "split_weights",
           "weighted_sum"]


def _cos(a):
    return torch.cos(a), torch.sin(a).neg_()


def _tanh(a):
    t = torch.tanh(a)
    return t, 1.0 - t * t


def _silu(a):
    s = torch.sigmoid(a)
    return a * s, s * (1.0 + a * (1.0 - s))


def _gelu(a):
    cdf = 0.5 * (1.0 + torch.erf(a / math.sqrt(2.0)))
    pdf = torch.exp(-0.5 * a * a) / math.sqrt(2.0 * math.pi)
    return a * cdf, cdf + a * pdf


def _relu(a):
    return torch.relu(a), (a > 0).to(a.dtype)


#: activation name -> function returning ``(sigma(a), sigma'(a))``
ACTIVATIONS = {"cos": _cos, "tanh": _tanh, "silu": _silu, "gelu": _gelu, "relu": _relu}

#: activation name -> ``sigma`` alone, computed in place (``a`` is overwritten and returned)
ACTIVATIONS_INPLACE = {
    "cos": torch.cos_,
    "tanh": torch.tanh_,
    "silu": lambda a: torch.nn.functional.silu(a, inplace=True),
    "gelu": lambda a: a.copy_(torch.nn.functional.gelu(a)),
    "relu": torch.relu_,
}


def split_weights(Y, weighted):
    """``(targets, weights)`` of a batch of an engine fitted with sample weights: ``Y`` without its last column and
    that column (the rows' weights, see :attr:`skflow.flows._flow.Flow.weighted`); ``(Y, None)`` when not
    ``weighted``."""
    if not weighted:
        return Y, None
    return Y[:, :-1], Y[:, -1]


def weighted_sum(values, w):
    """``sum_n w_n values_n`` over the rows (``values`` (n,) or (n, k)), or the plain sum when ``w`` is None."""
    if w is None:
        return values.sum()
    return (values * (w if values.dim() == 1 else w[:, None])).sum()


def lift(X, D):
    """Embed inputs in ``R^D``: ``z(0) = (x, 0)`` (lifting, thesis §II.6). ``X`` (N, d) -> (N, D)."""
    Z = X.new_zeros((X.shape[0], D))
    Z[:, : X.shape[1]] = X
    return Z


def regularizer_centre(regularization):
    """Minimiser of the outer-weight regulariser ``f`` (thesis Eq. III.43): 0 ('biased') or 1 ('unbiased')."""
    return 1.0 if regularization == "unbiased" else 0.0


def sample_spectral(n, dim, kernel="gaussian", length_scale=1.0, nu=1.5, generator=None, dtype=torch.float64):
    """Draw ``n`` frequencies in ``R^dim`` from the spectral measure of a kernel (rows of the result).

    'gaussian': ``N(0, I / l^2)``; 'matern': a multivariate Student-t with ``2 nu`` degrees of freedom scaled by
    ``1/l`` (the spectral density of the Matern kernel, thesis Eq. II.33-34). Drawn on the CPU with
    ``generator``, so that a seed gives the same frequencies on every device.
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
