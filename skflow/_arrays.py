"""Moving data between NumPy and torch, and seeded subsampling: one helper each, used everywhere."""

import numpy as np
import torch

__all__ = ["as_float64_tensor", "seeded_subsample", "rows_of", "to_numpy"]


def to_numpy(t):
    """A tensor (any device, any float dtype) as a float64 NumPy array; arrays pass through as float64."""
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().double().numpy()
    return np.asarray(t, dtype=np.float64)


def as_float64_tensor(A):
    """An array-like (or tensor) as a float64 CPU-or-same-device tensor."""
    if isinstance(A, torch.Tensor):
        return A.double()
    return torch.as_tensor(np.asarray(A, dtype=np.float64))


def rows_of(idx, *tensors):
    """The rows ``idx`` (a NumPy index array, or None for all) of each tensor, dense (a
    :class:`skflow._rows.SparseRows` is densified on those rows); None passes through."""
    if idx is None:
        return tuple(T.dense() if hasattr(T, "dense") else T for T in tensors)
    return tuple(None if T is None else T[torch.as_tensor(idx, device=T.device)] for T in tensors)


def seeded_subsample(n, max_samples, seed=0, sort=False):
    """Indices of at most ``max_samples`` of ``n`` rows, drawn with ``RandomState(seed)``.

    The draw depends on ``n`` only, so a diagnostic computed on the subsample is a function of the data.
    ``sort=True`` keeps the rows in their original order. Returns ``None`` when every row is kept.
    """
    if n <= max_samples:
        return None
    idx = np.random.RandomState(seed).permutation(n)[:max_samples]
    return np.sort(idx) if sort else idx
