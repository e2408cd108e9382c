"""Convergence diagnostics of the gradient flows: the quantities the theory's guarantees are stated in.

* :func:`conditional_wasserstein` -- exact ``W2_COT`` between particle parameterisations (Def. I.2);
* :func:`shl_limit_kernel` and :func:`kernel_lambda_min` -- the infinite-width kernel ``k^1`` of the
  mean-field SHL residual at initialisation (Eq. II.38, Cor. II.5.1) and its smallest eigenvalue;
* :func:`convergence_report` -- ties the P-L constant, the kernel prediction and the distance travelled
  to the observed linear rate (Thm. II.3, II.7);
* :func:`energy_distance` -- the MMD with kernel ``-|x - y|`` between weighted particle clouds (Ch. III).
"""

import math

import numpy as np

from .flows.transport import conditional_wasserstein
from .kernels import gaussian_kernel, lambda_min, matern_kernel

__all__ = [
    "conditional_wasserstein",
    "convergence_report",
    "energy_distance",
    "kernel_lambda_min",
    "lambda_min",
    "shl_limit_kernel",
]


def shl_limit_kernel(X, feature_init="gaussian", feature_scale=1.0, nu=1.5, Y=None):
    """Infinite-width kernel ``k^1(x, y) = E[cos(w.x + b) cos(w.y + b)]``, ``b ~ U[0, pi]`` (Cor. II.5.1).

    'gaussian' (``w ~ N(0, rho^2 I)``): ``exp(-rho^2 |x - y|^2 / 2) / 2``; 'student': half the Matern-``nu``
    kernel with length scale ``1 / rho``.
    """
    length_scale = 1.0 / feature_scale
    if feature_init == "gaussian":
        return 0.5 * gaussian_kernel(X, Y, length_scale)
    if feature_init == "student":
        return 0.5 * matern_kernel(X, Y, length_scale, nu)
    raise ValueError(f"feature_init must be 'gaussian' or 'student', got {feature_init!r}")


def kernel_lambda_min(X, feature_init="gaussian", feature_scale=1.0, nu=1.5):
    """``lambda_min`` of the infinite-width kernel matrix ``(k^1(x_i, x_j))_ij`` on the inputs ``X``."""
    return lambda_min(shl_limit_kernel(X, feature_init, feature_scale, nu))


def convergence_report(loss_curve, flow_time, pl_ratio_curve, lambda_0, n_samples, output_scale=1.0,
                       distance=None, displacement_curve=None):
    """Summarise what the theory predicts and what the run did.

    Returns a dict with

    - ``initial_risk``, ``final_risk``, ``flow_time`` (at the last recorded iteration);
    - ``observed_rate``: average linear rate ``-log(R(t)/R(0)) / t`` of the risk;
    - ``pl_constant``: minimum P-L ratio ``m`` along the trajectory; gradient flow guarantees
      ``R(t) <= R(0) exp(-m t)``;
    - ``pl_bound_holds``: whether the recorded curve obeys that bound (1e-9 relative slack);
    - ``kernel_lambda_min`` (``lambda_0``) and ``kernel_rate``: the rate ``2 alpha^2 lambda_0 / N`` the initial
      kernel alone guarantees (``||grad R||^2 >= 2 alpha^2 lambda_min(K1) R / N`` at the identity init);
    - ``distance_travelled`` (``W2_COT`` to the initialisation) and ``max_displacement``;
    - ``local_pl_radius`` and ``local_pl_condition``: with ``r`` the largest displacement explored, whether
      ``R(mu_0) < m r^2 / 4`` held (the local P-L condition of the Hauer-Mazon argument: it guarantees
      convergence inside the ball that was actually explored).
    """
    R = np.asarray(loss_curve, dtype=np.float64)
    t = np.asarray(flow_time, dtype=np.float64)
    pl = np.asarray(pl_ratio_curve, dtype=np.float64)
    report = {"n_iter": int(R.size)}
    if R.size == 0:
        return report
    R0, Rt, T = float(R[0]), float(R[-1]), float(t[-1])
    finite_pl = pl[np.isfinite(pl)]
    m = float(finite_pl.min()) if finite_pl.size else float("nan")
    rate = -math.log(Rt / R0) / T if T > 0 and R0 > 0 and Rt > 0 else float("nan")
    with np.errstate(over="ignore", invalid="ignore"):
        bound = R0 * np.exp(-m * t)
    report.update(
        initial_risk=R0,
        final_risk=Rt,
        flow_time=T,
        observed_rate=rate,
        pl_constant=m,
        pl_bound_holds=bool(np.all(R <= bound * (1 + 1e-9) + 1e-300)) if math.isfinite(m) else False,
        kernel_lambda_min=float(lambda_0),
        kernel_rate=2.0 * output_scale**2 * float(lambda_0) / n_samples,
    )
    if distance is not None:
        report["distance_travelled"] = float(distance)
    if displacement_curve is not None and len(displacement_curve):
        r = float(np.max(displacement_curve))
        report["max_displacement"] = r
        report["local_pl_radius"] = r
        report["local_pl_condition"] = bool(math.isfinite(m) and R0 < m * r * r / 4.0)
    return report


def energy_distance(a, b, weights_a=None, weights_b=None):
    """Energy distance (MMD with kernel ``-|x - y|``) between two weighted particle clouds.

    See :func:`skflow.flows.mmd.energy_distance`.
    """
    from .flows.mmd import energy_distance as _energy_distance

    return _energy_distance(a, b, weights_a=weights_a, weights_b=weights_b)
