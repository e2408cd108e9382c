"""Conditional optimal transport between particle parameterisations (thesis Def. I.2).

For two parameter measures that are piecewise constant in depth, with ``M`` equally weighted particles per
layer, ``W2_COT(mu, mu')^2 = (1/S) sum_k W2(mu_k, mu'_k)^2``, and each ``W2`` between two clouds of ``M``
equally weighted particles is an optimal assignment problem, solved exactly.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from .._arrays import seeded_subsample, to_numpy

__all__ = ["as_particle_array", "wasserstein2_uniform", "conditional_wasserstein"]


def as_particle_array(params):
    """Stack a parameterisation into an array of shape (S, M, P).

    ``params`` is an array (S, M, P) or (M, P) (one layer), or a sequence of such arrays -- e.g.
    ``(U, W, b)`` with shapes (S, M, D), (S, M, D), (S, M) -- concatenated per particle (a trailing
    axis is added to (S, M) arrays).
    """
    if isinstance(params, (tuple, list)):
        arrays = [to_numpy(p) for p in params]
        ndim = max(a.ndim for a in arrays)
        arrays = [a[..., None] if a.ndim == ndim - 1 else a for a in arrays]
        A = np.concatenate(arrays, axis=-1)
    else:
        A = to_numpy(params)
    if A.ndim == 2:
        A = A[None]
    if A.ndim != 3:
        raise ValueError(f"particles must have shape (S, M, P) or (M, P); got shape {A.shape}")
    return A


def wasserstein2_uniform(A, B):
    """Exact ``W2`` between two clouds of equally weighted particles, A (M, P) and B (M, P)."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if A.shape != B.shape:
        raise ValueError(f"the two clouds must have the same shape; got {A.shape} and {B.shape}")
    cost = cdist(A, B, "sqeuclidean")  # differences, not the expanded square: exact 0 for equal clouds
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(max(cost[rows, cols].mean(), 0.0)))


def conditional_wasserstein(params_a, params_b, max_particles=None, return_method=False):
    """Conditional Wasserstein distance ``W2_COT`` between two depth-indexed particle systems.

    Exact (an optimal assignment per layer, ``O(M^2)`` memory and ``O(M^3)`` time) when every layer has at most
    ``max_particles`` particles. Above that, each layer is replaced by the same seeded subsample of
    ``max_particles`` particles in both systems (a particle and its image stay paired): a bounded-memory
    estimate of the exact value.

    Parameters
    ----------
    params_a, params_b : array (S, M, P), or tuple of arrays such as ``(U, W, b)``
        Particles of each layer; see :func:`as_particle_array`.
    max_particles : int or None
        Largest layer solved exactly; ``None`` always solves exactly.
    return_method : bool
        Also return ``'exact'`` or ``'subsample(k)'``.

    Returns
    -------
    float, or (float, str)
        ``sqrt((1/S) sum_k W2(mu_k, mu'_k)^2)``.
    """
    A, B = as_particle_array(params_a), as_particle_array(params_b)
    if A.shape != B.shape:
        raise ValueError(f"parameterisations must have the same shape (S, M, P); got {A.shape} and {B.shape}")
    method = "exact"
    idx = seeded_subsample(A.shape[1], max_particles) if max_particles else None
    if idx is not None:
        A, B = A[:, idx], B[:, idx]
        method = f"subsample({len(idx)})"
    sq = [wasserstein2_uniform(A[k], B[k]) ** 2 for k in range(A.shape[0])]
    value = float(np.sqrt(np.mean(sq)))
    return (value, method) if return_method else value
