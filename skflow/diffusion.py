"""Weighted ultra-fast diffusion on S^1 (thesis Eq. III.35), the ``lambda -> 0`` limit of the VarPro flow.

.. math::

    \\partial_t \\mu = -\\|\\bar\\nu\\|_{TV}^r\\,
    \\partial_\\theta\\big(\\mu\\, \\partial_\\theta (\\bar\\mu/\\mu)^r\\big)

on the circle parameterised by the angle (unit speed, so the particle velocity of the VarPro flow
``-M grad L`` is ``+|nu|^r d_theta (mu_bar/mu)^r``). Flow time is the VarPro time ``tau * iterations``.
"""

import numpy as np
from scipy.integrate import solve_ivp

__all__ = ["ultrafast_diffusion_s1"]


def ultrafast_diffusion_s1(target_density, times, *, n_grid=256, initial_density=None, r=2, nu_tv=1.0,
                           f_scale=1.0, rtol=1e-6, atol=1e-9):
    """Solve the weighted ultra-fast diffusion (Eq. III.35) on a periodic grid with LSODA.

    Finite volumes on ``n_grid`` cells of width ``h = 2 pi / n_grid``: with ``q = (mu_bar / mu)^r``, the flux
    through the face between cells ``j`` and ``j + 1`` is ``J = c mu_{j+1/2} (q_{j+1} - q_j) / h``
    (``mu_{j+1/2}`` the mean of the two cells), and ``d mu_j / dt = -(J_{j+1/2} - J_{j-1/2}) / h``, which
    conserves mass exactly. The problem is stiff where ``mu`` is small (the diffusivity ``~ mu^{-r-1}``
    blows up), hence the implicit-capable LSODA integrator, as in the thesis (§III.6.1).

    Parameters
    ----------
    target_density : callable or array-like of shape (n_grid,)
        ``mu_bar``: a function of the angle (e.g. :func:`skflow.datasets.teacher_density`) or its values at
        the cell centres ``theta_j = -pi + (j + 1/2) h``. Normalised to a probability density.
    times : array-like of float
        Non-decreasing times at which to return the density (``0`` returns the initial density).
    n_grid : int, default=256
        Number of cells of the periodic grid on ``(-pi, pi]``.
    initial_density : callable, array-like or None
        ``mu_0``; uniform when None (the VarPro initialisation ``omega_i ~ U(S^1)``).
    r : float, default=2
        Exponent of Eq. III.35 (``f(u) = |u|^r / (r - 1)``; the quadratic regularisers are ``r = 2``).
    nu_tv : float, default=1
        ``|nu_bar|_TV``: 1 for a teacher with unit outer weights.
    f_scale : float, default=1
        The regulariser is ``f(t) = f_scale |t|^r / (r - 1)``; Eq. III.35 is ``f_scale = 1``. The quadratic
        regularisers of §III.6.1, ``|u|^2/2`` and ``|u - 1|^2/2``, are ``f_scale = 1/2`` (both have the same
        ``lambda -> 0`` limit, ``L^0 = (1/2) int (mu_bar/mu)^2 dmu`` up to a constant): the velocity
        ``f_scale |nu|^r d_theta (mu_bar/mu)^r`` is then half that of Eq. III.35.
    rtol, atol : float
        LSODA tolerances.

    Returns
    -------
    theta : ndarray of shape (n_grid,)
        Cell centres.
    densities : ndarray of shape (len(times), n_grid)
        ``mu_t`` at the requested times (densities w.r.t. ``d theta``, each integrating to one).
    """
    h = 2 * np.pi / n_grid
    theta = -np.pi + (np.arange(n_grid) + 0.5) * h

    def on_grid(f, name):
        v = np.asarray(f(theta) if callable(f) else f, dtype=np.float64).reshape(-1)
        if v.shape[0] != n_grid:
            raise ValueError(f"{name} has {v.shape[0]} values for a grid of {n_grid} cells.")
        if np.any(v <= 0) or not np.all(np.isfinite(v)):
            # the equation needs bounded log-densities (Thm. III.2): a zero makes (mu_bar / mu) singular
            raise ValueError(f"{name} must be finite and positive on the grid.")
        return v / (v.sum() * h)

    mu_bar = on_grid(target_density, "target_density")
    mu0 = on_grid(initial_density if initial_density is not None else (lambda t: np.ones_like(t)),
                  "initial_density")
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    if np.any(np.diff(times) < 0) or np.any(times < 0):
        raise ValueError("times must be non-negative and non-decreasing.")
    # first variation of L^0 = f_scale |nu|^r / (r - 1) int (mu_bar/mu)^r dmu is -f_scale |nu|^r (mu_bar/mu)^r
    c = float(f_scale) * float(nu_tv) ** r

    def rhs(_, mu):
        mu = np.maximum(mu, 1e-300)
        q = (mu_bar / mu) ** r
        mu_face = 0.5 * (mu + np.roll(mu, -1))
        J = c * mu_face * (np.roll(q, -1) - q) / h
        return -(J - np.roll(J, 1)) / h

    if times.size == 0:
        return theta, np.zeros((0, n_grid))
    t_end = float(times[-1])
    if t_end == 0.0:
        return theta, np.tile(mu0, (times.size, 1))
    sol = solve_ivp(rhs, (0.0, t_end), mu0, method="LSODA", t_eval=times, rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"LSODA failed on the ultra-fast diffusion: {sol.message}")
    return theta, sol.y.T.copy()
