"""Synthetic data sets of the thesis: the S^1 teacher-student problem of §III.6.1."""

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["make_teacher_student", "sample_teacher_angles", "teacher_density"]

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
    gamma, modes, weights
        As in :func:`teacher_density`.
    random_state : int, RandomState instance or None, default=None
        Seeds the mode of each angle and its offset.

    Returns
    -------
    ndarray of shape (n,), angles in ``(-pi, pi]``
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
    y : ndarray of shape (n_samples,)
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
