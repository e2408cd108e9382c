"""Energy distance: the MMD with the (conditionally positive) kernel ``kappa(x, y) = -|x - y|`` (Eq. III.49).

Used in Chapter III to measure how far a cloud of student features is from the teacher features, or from
the ultra-fast diffusion solution discretised on a grid (weighted points).
"""

import numpy as np
import torch

from .._arrays import as_float64_tensor

__all__ = ["energy_distance"]


def _as_points(a):
    a = as_float64_tensor(a).detach().cpu()
    if a.ndim == 1:  # scalars: points on the real line
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"points must be an array of shape (n, dim) or (n,); got shape {tuple(a.shape)}.")
    return a


def _as_weights(w, n):
    if w is None:
        return torch.full((n,), 1.0 / n, dtype=torch.float64)
    w = torch.as_tensor(np.asarray(w, dtype=np.float64)).reshape(-1)
    if w.shape[0] != n:
        raise ValueError(f"got {w.shape[0]} weights for {n} points.")
    if torch.any(w < 0) or not torch.isfinite(w).all():
        raise ValueError("weights must be finite and non-negative.")
    s = w.sum()
    if s <= 0:
        raise ValueError("weights must not all be zero.")
    # the MMD compares probability measures: normalise, so that grid densities can be passed as they are
    return w / s


def _mean_abs_distance(a, wa, b, wb, chunk=4096):
    """``sum_ij wa_i wb_j |a_i - b_j|``, chunked so that memory stays ``O(chunk * len(b))``."""
    total = torch.zeros((), dtype=torch.float64)
    for s in range(0, a.shape[0], chunk):
        D = torch.cdist(a[s:s + chunk], b)
        total = total + wa[s:s + chunk] @ D @ wb
    return total


def energy_distance(a, b, weights_a=None, weights_b=None):
    """Energy distance between two weighted point clouds (MMD with kernel ``-|x - y|``, Eq. III.49).

    .. math::

        \\mathrm{MMD}(\\nu, \\nu')^2 = 2\\,\\mathbb{E}|X - Y| - \\mathbb{E}|X - X'| - \\mathbb{E}|Y - Y'|,
        \\quad X, X' \\sim \\nu,\\ Y, Y' \\sim \\nu'.

    The kernel ``-|x - y|`` is conditionally positive definite, so this is a distance between probability
    measures with a first moment (Székely-Rizzo energy distance).

    Parameters
    ----------
    a : array-like or Tensor of shape (n, dim) or (n,)
        Points of the first cloud (e.g. features on S^1 given as unit vectors in R^2: the distance is
        then the chordal one, as in the thesis).
    b : array-like or Tensor of shape (m, dim) or (m,)
        Points of the second cloud.
    weights_a, weights_b : array-like of shape (n,) / (m,), optional
        Non-negative weights, normalised to sum to one; uniform when omitted.

    Returns
    -------
    float
        The MMD (not squared); ``0`` for identical clouds.
    """
    a, b = _as_points(a), _as_points(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"point clouds live in different dimensions: {a.shape[1]} and {b.shape[1]}.")
    if a.shape[0] == 0 or b.shape[0] == 0:
        raise ValueError("energy_distance needs non-empty point clouds.")
    wa, wb = _as_weights(weights_a, a.shape[0]), _as_weights(weights_b, b.shape[0])
    sq = (2.0 * _mean_abs_distance(a, wa, b, wb) - _mean_abs_distance(a, wa, a, wa)
          - _mean_abs_distance(b, wb, b, wb))
    # round-off can make the square slightly negative for nearly equal clouds
    return float(torch.sqrt(torch.clamp(sq, min=0.0)))
