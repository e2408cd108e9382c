"""Polyak-Lojasiewicz quantities: the convergence report of a run, and the P-L bound of the RKHS NODE.

* :func:`convergence_report` ties the P-L constant, the kernel prediction and the distance travelled to the
  observed linear rate (thesis Thm. II.3, II.7);
* :func:`feature_kappa` and :func:`pl_bound` evaluate the constants of Lemma II.4.1 and Prop. II.4.4.
"""

import math

import numpy as np
import torch

from .._arrays import as_float64_tensor
from .._tables import format_value, html_table, text_table
from .kernels import exact_kernel_lambda_min

__all__ = ["ConvergenceReport", "convergence_report", "feature_kappa", "pl_bound"]

_REPORT_ROWS = (
    ("n_iter", "iterations"),
    ("flow_time", "flow time T"),
    ("initial_risk", "R(0)"),
    ("final_risk", "R(T)"),
    ("observed_rate", "observed rate -log(R(T)/R(0))/T"),
    ("predicted_rate", "predicted rate (certificate)"),
    ("pl_constant", "P-L constant m (min ratio)"),
    ("kernel_lambda_min", "lambda_0 (kernel at init)"),
    ("kernel_rate", "kernel rate 2 alpha^2 lambda_0 / N"),
    ("distance_travelled", "W2_COT to the init"),
    ("max_displacement", "max displacement r"),
)


class ConvergenceReport(dict):
    """The convergence report of a run (a dict), rendered as a short table by ``print`` and in notebooks.

    The sentences under the table say whether the P-L bound ``R(t) <= R(0) exp(-m t)`` held along the run
    (Thm. II.3), whether the local P-L condition ``R(mu_0) < m r^2 / 4`` (Eq. II.10) held on the ball explored,
    how the observed rate compares with a certificate's predicted one, and the kernel note if any.
    """

    def rows(self):
        """Return the ``(label, value)`` pairs of the table, for the keys present.

        Returns
        -------
        list of tuple
            ``(label, value)`` per row, in the table's order.
        """
        return [(label, self[key]) for key, label in _REPORT_ROWS if key in self]

    def sentences(self):
        """Return the verdicts in words.

        Returns
        -------
        list of str
            One sentence per verdict present in the report.
        """
        out = []
        cert = self.get("certificate")
        if cert is not None and "output_scale" in cert:
            out.append(f"Before training, at output scale {cert['output_scale']:g}, the certificate's sufficient "
                       "condition " + ("held." if cert.get("condition_holds") else "failed."))
        if "pl_bound_holds" in self:
            out.append("The P-L bound R(t) <= R(0) exp(-m t) " + ("held" if self["pl_bound_holds"] else
                       "did not hold") + " along the run (Thm. II.3).")
        if "local_pl_condition" in self:
            out.append("A posteriori, the local P-L condition R(0) < m r^2 / 4 with r the displacement reached " + (
                "held: convergence is guaranteed (Eq. II.10)." if self["local_pl_condition"] else
                "did not hold (this check is conclusive only when it holds)."))
        if "rate_at_least_predicted" in self:
            out.append(f"The observed rate {format_value(self.get('observed_rate'))} is " + (
                "at least" if self["rate_at_least_predicted"] else "below") +
                f" the certified rate {format_value(self.get('predicted_rate'))}.")
        if "kernel_note" in self:
            out.append("Note: " + str(self["kernel_note"]))
        return out

    def __str__(self):
        return text_table("Convergence report", self.rows(), self.sentences())

    def _repr_html_(self):
        return html_table("Convergence report", self.rows(), self.sentences())


def convergence_report(loss_curve, flow_time, pl_ratio_curve, lambda_0, n_samples, output_scale=1.0,
                       distance=None, displacement_curve=None, predicted_rate=None):
    """Summarise what the theory predicts and what the run did.

    Parameters
    ----------
    loss_curve : array-like of shape (n_iter,)
        The training risk ``R`` at each recorded iteration.
    flow_time : array-like of shape (n_iter,)
        The flow time ``t`` of each recorded iteration (0 first).
    pl_ratio_curve : array-like of shape (n_iter,)
        The P-L ratio ``|grad R|^2 / R`` at each recorded iteration.
    lambda_0 : float
        ``lambda_min`` of the kernel matrix at initialisation.
    n_samples : int
        Number of training points ``N``.
    output_scale : float, default=1.0
        The output scale ``alpha`` of the lifting-and-scaling construction.
    distance : float or None, default=None
        ``W2_COT`` from the initialisation to the returned parameters, reported as ``distance_travelled``.
    displacement_curve : array-like or None, default=None
        The displacement from the initialisation along the run; its maximum is the radius ``r``.
    predicted_rate : float or None, default=None
        A rate predicted before training (by :func:`skflow.inspection.certify`), compared with the observed one.

    Returns
    -------
    ConvergenceReport
        A dict that prints as a table, with the keys below.

    Notes
    -----
    The keys of the report:

    - ``initial_risk``, ``final_risk``, ``flow_time`` (at the last recorded iteration);
    - ``observed_rate``: average linear rate ``-log(R(t)/R(0)) / t`` of the risk;
    - ``pl_constant``: minimum P-L ratio ``m`` along the trajectory; gradient flow guarantees
      ``R(t) <= R(0) exp(-m t)``;
    - ``pl_bound_holds``: whether the recorded curve obeys that bound (1e-9 relative slack);
    - ``kernel_lambda_min`` (``lambda_0``) and ``kernel_rate = 2 output_scale^2 lambda_0 / N``, the P-L constant
      of the initial kernel at the identity init (Eq. II.41, Thm. II.7);
    - ``distance_travelled`` (``W2_COT`` to the initialisation) and ``max_displacement``;
    - ``local_pl_radius`` and ``local_pl_condition``: with ``r`` the largest displacement explored, whether
      ``R(mu_0) < m r^2 / 4`` held (the local P-L condition of the Hauer-Mazon argument: it guarantees
      convergence inside the ball that was actually explored);
    - with ``predicted_rate`` (of :func:`skflow.inspection.certify`): ``rate_at_least_predicted``.
    """
    R = np.asarray(loss_curve, dtype=np.float64)
    t = np.asarray(flow_time, dtype=np.float64)
    pl = np.asarray(pl_ratio_curve, dtype=np.float64)
    report = ConvergenceReport(n_iter=int(R.size))
    if R.size == 0:
        return report
    R0, Rt, T = float(R[0]), float(R[-1]), float(t[-1])
    finite_pl = pl[np.isfinite(pl)]
    m = float(finite_pl.min()) if finite_pl.size else float("nan")
    rate = -math.log(Rt / R0) / T if T > 0 and R0 > 0 and Rt > 0 else float("nan")
    with np.errstate(over="ignore", invalid="ignore"):
        bound = R0 * np.exp(-m * t)
    report.update(
        initial_risk=R0, final_risk=Rt, flow_time=T, observed_rate=rate, pl_constant=m,
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
    if predicted_rate is not None:
        report.update(predicted_rate=float(predicted_rate), rate_at_least_predicted=bool(rate >= predicted_rate))
    return report


def feature_kappa(W):
    """Estimate of ``kappa = ||phi||_{C^2}`` for ``phi(z) = sqrt(2/M) cos(W z + b)`` (Lemma II.4.1).

    Uses the bounds of the proof of Lemma II.4.1, uniform in ``z``:
    ``sup |phi| <= sqrt(2)``, ``sup |D phi|_op <= sqrt((2/M) sum_i |w_i|^2)``,
    ``sup |D^2 phi| <= sqrt((2/M) sum_i |w_i|^4)``; ``kappa`` is their maximum.

    Parameters
    ----------
    W : array-like or tensor of shape (M, D)
        The frequencies ``w_i`` of the random features.

    Returns
    -------
    float
        The estimate of ``kappa``.
    """
    W = torch.as_tensor(W).double()
    M = W.shape[0]
    n2 = (W * W).sum(1)
    d1 = math.sqrt(2.0 / M * float(n2.sum()))
    d2 = math.sqrt(2.0 / M * float((n2 * n2).sum()))
    return max(math.sqrt(2.0), d1, d2)


def pl_bound(X, radius, kappa, n_samples, kernel="gaussian", length_scale=1.0, nu=1.5, loss_factor=1.0, weights=None):
    """The P-L constant of Prop. II.4.4, ``m = c_loss lambda_K(delta e^{-kappa R}) e^{-2 kappa R} / N`` (Eq. II.29).

    ``lambda_K`` (Eq. II.30) is an infimum over every configuration with separation at least
    ``delta e^{-kappa R}`` and cannot be computed. It is replaced by ``lambda_min`` of the exact kernel on
    the given inputs ``X`` contracted about their mean by ``e^{-kappa R}`` -- one configuration whose separation
    is exactly ``delta e^{-kappa R}``. This is an optimistic stand-in for the infimum (an upper estimate of the
    theoretical ``m``), exact in the sense of the proof only if the training trajectory contracted the
    data uniformly. ``loss_factor`` is the constant ``c`` of ``|grad_z l|^2 >= c l`` (Assumption II.1) for the
    loss composed with the output scale (``2 output_scale^2`` for the squared loss, see
    :class:`skflow.RKHSNODEClassifier`).

    Parameters
    ----------
    X : array-like or tensor of shape (n_samples, n_features)
        The inputs whose contraction stands in for the worst configuration.
    radius : float
        The radius ``R`` of the ball of parameters (in ``L2([0, 1], F)``) the bound holds on.
    kappa : float
        ``||phi||_{C^2}`` of the feature map (see :func:`feature_kappa`).
    n_samples : int
        Number of training points ``N``.
    kernel : {'gaussian', 'matern'}, default='gaussian'
        The kernel ``k``.
    length_scale : float, default=1.0
        Its length scale.
    nu : float, default=1.5
        Smoothness of the Matern kernel.
    loss_factor : float, default=1.0
        The constant ``c_loss`` of the loss (see above).
    weights : array-like of shape (n_samples,), default=None
        Sample weights of the rows of ``X``: ``lambda_min`` is then that of the weighted empirical measure's kernel
        (:func:`skflow.diagnostics.kernels.lambda_min`). None: equal weights.

    Returns
    -------
    float
        The estimate of the P-L constant ``m``.
    """
    Xt = as_float64_tensor(X)
    shrink = math.exp(-kappa * radius)
    Xc = Xt.mean(0, keepdim=True) + shrink * (Xt - Xt.mean(0, keepdim=True))
    lam = exact_kernel_lambda_min(Xc, kernel, length_scale, nu, weights)
    return loss_factor * lam * shrink**2 / n_samples
