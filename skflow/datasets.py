"""Synthetic data sets of the thesis: the S^1 teacher-student problem of §III.6.1 and the torus RBF
deconvolution of App. III.B."""

import numpy as np
import torch
from sklearn.utils import check_random_state

from .flows._features import RBFKernel, Torus, rbf_features

__all__ = [
    "make_teacher_student",
    "make_torus_teacher",
    "sample_teacher_angles",
    "sample_torus_teacher",
    "teacher_density",
    "torus_teacher_density",
]

_DEFAULT_MODES = (0.0, 0.4 * np.pi)
_DEFAULT_WEIGHTS = (2.0 / 3.0, 1.0 / 3.0)


def _check_mixture(gamma, modes, weights):
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0; got {gamma}.")
    modes = np.asarray(modes, dtype=np.float64).reshape(-1)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if modes.shape != weights.shape or modes.size == 0:
        raise ValueError("modes and weights must be non-empty and of the same length.")
    if np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError("weights must be non-negative and not all zero.")
    return modes, weights / weights.sum()


def teacher_density(theta, gamma=100.0, modes=_DEFAULT_MODES, weights=_DEFAULT_WEIGHTS):
    """Density (w.r.t. the angle ``d theta``) of ``mu_gamma = (sum_k w_k delta_{m_k}) * pi_gamma`` (Eq. III.40).

    ``pi_gamma(theta) = sqrt(1 + gamma) / (2 pi (1 + gamma sin^2(theta / 2)))``: the normalising constant
    follows from ``int_{-pi}^{pi} d theta / (1 + gamma sin^2(theta/2)) = 2 pi / sqrt(1 + gamma)``.

    Parameters
    ----------
    theta : array-like
        Angles (radians).
    gamma : float, default=100
        Concentration; 0 is uniform, ``gamma -> inf`` tends to the atoms at ``modes``.
    modes, weights : sequences of float
        Centres ``omega_k^*`` and mixture weights (normalised to sum to one).

    Returns
    -------
    ndarray, same shape as ``theta``
        The density at ``theta``.
    """
    modes, weights = _check_mixture(gamma, modes, weights)
    theta = np.asarray(theta, dtype=np.float64)
    out = np.zeros_like(theta)
    for m, w in zip(modes, weights):
        out += w * np.sqrt(1.0 + gamma) / (2 * np.pi * (1.0 + gamma * np.sin((theta - m) / 2) ** 2))
    return out


def sample_teacher_angles(n, gamma=100.0, modes=_DEFAULT_MODES, weights=_DEFAULT_WEIGHTS, random_state=None):
    """I.i.d. angles from ``mu_gamma`` (Eq. III.40), by exact inverse-CDF sampling of ``pi_gamma``.

    The CDF of ``pi_gamma`` on ``(-pi, pi)`` is ``1/2 + atan(sqrt(1 + gamma) tan(theta / 2)) / pi``, hence
    ``theta = 2 atan(tan(pi (U - 1/2)) / sqrt(1 + gamma))`` with ``U`` uniform.

    Parameters
    ----------
    n : int
        Number of angles.
    gamma : float, default=100
        Concentration, as in :func:`teacher_density`.
    modes : sequence of float, default=(0, 0.4 pi)
        Centres of the mixture, as in :func:`teacher_density`.
    weights : sequence of float, default=(2/3, 1/3)
        Mixture weights, as in :func:`teacher_density`.
    random_state : int, RandomState instance or None, default=None
        Seeds the mode of each angle and its offset.

    Returns
    -------
    ndarray of shape (n,)
        The angles, in ``(-pi, pi]``.
    """
    modes, weights = _check_mixture(gamma, modes, weights)
    rng = check_random_state(random_state)
    k = rng.choice(modes.size, size=n, p=weights)
    U = rng.uniform(size=n)
    theta = 2.0 * np.arctan(np.tan(np.pi * (U - 0.5)) / np.sqrt(1.0 + gamma)) + modes[k]
    return np.angle(np.exp(1j * theta))  # wrap to (-pi, pi]


def make_teacher_student(n_samples=4096, *, teacher_width=4096, gamma=100.0, modes=_DEFAULT_MODES,
                         weights=_DEFAULT_WEIGHTS, noise=0.0, return_teacher=False, random_state=None):
    """The S^1 teacher-student regression problem of thesis §III.6.1.

    Inputs ``x ~ N(0, I_2)``; target ``y(x) = (1/M_bar) sum_j ReLU(omega_bar_j . x)`` (+ optional Gaussian
    noise), the teacher features ``omega_bar_j = (cos theta_j, sin theta_j)`` with ``theta_j ~ mu_gamma``
    i.i.d. (Eq. III.40) and unit outer weights, so that the unbiased regulariser ``|u - 1|^2/2`` has the
    teacher as minimiser (§III.3). Fit with ``VarProSHLRegressor(feature_domain='sphere',
    regularization='unbiased')``.

    Parameters
    ----------
    n_samples : int, default=4096
        ``N``.
    teacher_width : int, default=4096
        ``M_bar``.
    gamma : float, default=100
        Concentration of the teacher's angle law ``mu_gamma`` (Eq. III.40); 0 is uniform.
    modes : sequence of float, default=(0, 0.4 pi)
        Centres ``omega_k^*`` (angles, radians) of the mixture.
    weights : sequence of float, default=(2/3, 1/3)
        Mixture weights of the modes (normalised to sum to one).
    noise : float, default=0
        Standard deviation of Gaussian noise added to ``y``.
    return_teacher : bool, default=False
        Also return the teacher features.
    random_state : int, RandomState instance or None, default=None
        Seeds the teacher angles, the inputs and the noise; pass an int for a reproducible data set.

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
        The inputs.
    y : ndarray of shape (n_samples,)
        The targets.
    teacher_features : ndarray of shape (teacher_width, 2)
        Only when ``return_teacher=True``.
    """
    if n_samples < 1 or teacher_width < 1:
        raise ValueError("n_samples and teacher_width must be positive.")
    if noise < 0:
        raise ValueError(f"noise must be >= 0; got {noise}.")
    rng = check_random_state(random_state)
    theta = sample_teacher_angles(teacher_width, gamma, modes, weights, random_state=rng)
    teacher = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    X = rng.standard_normal((n_samples, 2))
    y = np.maximum(X @ teacher.T, 0.0).mean(axis=1)
    if noise > 0:
        y = y + noise * rng.standard_normal(n_samples)
    if return_teacher:
        return X, y, teacher
    return X, y


# ------------------------------------------------------------------------------ torus RBF deconvolution (App. III.B)
_TORUS_MODES = ((-1.0, 0.0), (1.0, 1.0))
_TORUS_WEIGHTS = (0.5, 0.5)


def _check_torus_mixture(gamma, period, modes, weights):
    if not gamma >= 0:  # also rejects NaN; gamma = inf is the atomic teacher
        raise ValueError(f"gamma must be >= 0 (np.inf for atoms at the modes); got {gamma}.")
    if not (np.isfinite(period) and period > 0):
        raise ValueError(f"period must be a positive finite number; got {period}.")
    modes = np.atleast_2d(np.asarray(modes, dtype=np.float64))
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if modes.ndim != 2 or modes.shape[0] != weights.shape[0] or modes.size == 0:
        raise ValueError("modes must be an array of shape (n_modes, d) and weights of shape (n_modes,).")
    if np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError("weights must be non-negative and not all zero.")
    return modes, weights / weights.sum()


def _wrap(Z, period):
    """Representative of ``Z`` modulo ``period`` in ``[-period/2, period/2)``."""
    W = Z - period * np.floor(Z / period + 0.5)
    return np.where(W >= 0.5 * period, W - period, W)


def torus_teacher_density(z, gamma=100.0, period=4.0, modes=_TORUS_MODES, weights=_TORUS_WEIGHTS):
    """Density (w.r.t. Lebesgue on ``[-L/2, L/2)^d``) of ``mu_gamma = (sum_k w_k delta_{m_k}) * pi_gamma`` (App. III.B).

    ``pi_gamma(z) = prod_j sqrt(1 + gamma) / (L (1 + gamma sin^2(pi z_j / L)))``, the product over coordinates of
    the S^1 law of Eq. III.40 rescaled to the period ``L`` (the thesis's ``1 / (1 + gamma sin^2(z_j pi / 4))``
    for ``L = 4``); the constant follows from ``int_0^L dz / (1 + gamma sin^2(pi z / L)) = L / sqrt(1 + gamma)``.

    Parameters
    ----------
    z : array-like of shape (n, d)
        Points (any representatives: the density is periodic).
    gamma : float, default=100
        Concentration; 0 is uniform. ``np.inf`` (atoms) has no density.
    period : float, default=4.0
        ``L``.
    modes : array-like of shape (n_modes, d), default=((-1, 0), (1, 1))
        The modes ``m_k``.
    weights : array-like of shape (n_modes,), default=(1/2, 1/2)
        Mixture weights of the modes, normalised to sum to one.

    Returns
    -------
    ndarray of shape (n,)
        The density at each point.
    """
    modes, weights = _check_torus_mixture(gamma, period, modes, weights)
    if not np.isfinite(gamma):
        raise ValueError("gamma = inf is a sum of atoms: it has no density.")
    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    if z.shape[1] != modes.shape[1]:
        raise ValueError(f"z has {z.shape[1]} coordinates but the modes have {modes.shape[1]}.")
    out = np.zeros(z.shape[0])
    c = np.sqrt(1.0 + gamma) / period
    for m, w in zip(modes, weights):
        out += w * np.prod(c / (1.0 + gamma * np.sin(np.pi * (z - m) / period) ** 2), axis=1)
    return out


def sample_torus_teacher(n, gamma=100.0, period=4.0, modes=_TORUS_MODES, weights=_TORUS_WEIGHTS,
                         random_state=None):
    """I.i.d. points of the torus ``R^d / L Z^d`` from ``mu_gamma`` (:func:`torus_teacher_density`), exactly.

    The mode of each point is drawn with probability ``weights``, then each coordinate of its offset
    independently (``pi_gamma`` is a product measure) by inverse CDF: the CDF of ``1 / (1 + gamma sin^2(pi z /
    L))`` on ``[-L/2, L/2)`` is ``1/2 + atan(sqrt(1 + gamma) tan(pi z / L)) / pi``, so
    ``z = (L / pi) atan(tan(pi (U - 1/2)) / sqrt(1 + gamma))`` with ``U`` uniform. ``gamma = np.inf`` gives the
    atoms at the modes.

    Parameters
    ----------
    n : int
        Number of points.
    gamma : float, default=100
        Concentration, as in :func:`torus_teacher_density` (``np.inf``: the atoms).
    period : float, default=4.0
        The period ``L``.
    modes : array-like of shape (n_modes, d), default=((-1, 0), (1, 1))
        The modes, as in :func:`torus_teacher_density`.
    weights : array-like of shape (n_modes,), default=(1/2, 1/2)
        Mixture weights, as in :func:`torus_teacher_density`.
    random_state : int, RandomState instance or None, default=None
        Seeds the mode of each point and its offset.

    Returns
    -------
    ndarray of shape (n, d)
        The points, in ``[-L/2, L/2)^d``.
    """
    modes, weights = _check_torus_mixture(gamma, period, modes, weights)
    rng = check_random_state(random_state)
    k = rng.choice(modes.shape[0], size=n, p=weights)
    U = rng.uniform(size=(n, modes.shape[1]))
    offset = (period / np.pi) * np.arctan(np.tan(np.pi * (U - 0.5)) / np.sqrt(1.0 + gamma))
    return _wrap(modes[k] + offset, period)


def make_torus_teacher(n_samples=4096, n_teacher=4096, gamma=100.0, period=4.0, kernel="laplace", *,
                       bandwidth=2.0, modes=_TORUS_MODES, weights=_TORUS_WEIGHTS, noise=0.0, random_state=None):
    """The teacher-student deconvolution problem on the torus of thesis App. III.B (Fig. III.10).

    Inputs ``x ~ N(0, I_d)``; target ``y(x) = (1/M_bar) sum_j k([omega_bar_j - x])`` (+ optional Gaussian
    noise): the RBF network of Eq. III.50 with unit outer weights and the teacher centres ``omega_bar_j ~
    mu_gamma`` i.i.d. (:func:`sample_torus_teacher`), so that the unbiased regulariser ``|u - 1|^2/2`` has the
    teacher as minimiser (§III.3). ``[.]`` is the projection on ``[-L/2, L/2)^d`` and ``k`` the kernel of
    ``VarProSHLRegressor(feature_map='rbf', feature_domain='torus', rbf_kernel=kernel,
    rbf_bandwidth=bandwidth, torus_period=period)`` (the thesis's ``8 exp(-|z| / 2)`` by default), which is
    the model to fit, with ``regularization='unbiased'``.

    Parameters
    ----------
    n_samples : int, default=4096
        ``N``.
    n_teacher : int, default=4096
        ``M_bar``.
    gamma : float, default=100
        Concentration of the teacher law (``np.inf``: atoms at the modes).
    period : float, default=4.0
        ``L``.
    kernel : {'laplace', 'gaussian'}, default='laplace'
        See ``VarProSHLRegressor``'s ``rbf_kernel``.
    bandwidth : float, default=2.0
        See ``VarProSHLRegressor``'s ``rbf_bandwidth``.
    modes : array-like of shape (n_modes, d), default=((-1, 0), (1, 1))
        The modes ``omega_k^*``; their dimension is that of the inputs.
    weights : array-like of shape (n_modes,), default=(1/2, 1/2)
        Mixture weights of the modes.
    noise : float, default=0
        Standard deviation of Gaussian noise added to ``y``.
    random_state : int, RandomState instance or None, default=None
        Seeds the teacher, the inputs and the noise; pass an int for a reproducible data set.

    Returns
    -------
    X : ndarray of shape (n_samples, d)
        The inputs.
    y : ndarray of shape (n_samples,)
        The targets.
    teacher : ndarray of shape (n_teacher, d)
        The teacher centres, in ``[-L/2, L/2)^d``.
    """
    if n_samples < 1 or n_teacher < 1:
        raise ValueError("n_samples and n_teacher must be positive.")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0; got {noise}.")
    k = RBFKernel(kernel, float(bandwidth))  # validates the kernel name and the bandwidth
    rng = check_random_state(random_state)
    teacher = sample_torus_teacher(n_teacher, gamma, period, modes, weights, random_state=rng)
    X = rng.standard_normal((n_samples, teacher.shape[1]))
    T, torus = torch.as_tensor(teacher), Torus(float(period))
    y = np.empty(n_samples)
    for s in range(0, n_samples, 1024):  # chunks of rows: memory O(1024 * n_teacher)
        Phi, _, _ = rbf_features(T, torch.as_tensor(X[s:s + 1024]), k, torus)
        y[s:s + 1024] = Phi.mean(dim=1).numpy()
    if noise > 0:
        y = y + noise * rng.standard_normal(n_samples)
    return X, y, teacher
